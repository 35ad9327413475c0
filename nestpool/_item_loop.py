"""The one loop that runs the items of a chunk, wherever a chunk runs.

What it owns: ``run_batch``, which calls a function on a span of items in
the calling thread, stopping at the first exception of any kind
(``SystemExit`` and ``KeyboardInterrupt`` included), which it returns rather
than raises; ``run_span``, the same writing each item's index to a mark
before it runs; and ``run_outcomes``, the whole chunk as
``(ok, value_or_exception)`` pairs built on ``run_batch``. A worker's
process-task chunk (``_worker_calls``), a subtask chunk on a thread pool
(``_collate``) and a Dask task's items (``_dask``) all run their items
here, so an exception in one item is that item's outcome, the same way in
each, and the other items still run.

It must never import parent-side modules, nor send or pickle anything: the
caller decides what an outcome becomes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, MutableSequence, Sequence
from typing import Any

from ._protocol import SHAPE_ARGS, SHAPE_UNARY
from ._records import Outcome

__all__ = ["run_batch", "run_outcomes", "run_span"]


def run_span(
    fn: Callable[..., Any],
    items: Sequence[Any],
    index: int,
    end: int,
    shape: int,
    done: list[Any],
    marks: MutableSequence[int],
    runner: int,
) -> tuple[int, BaseException | None]:
    """Run ``items[index:end]`` in turn, appending each value to ``done``.

    ``marks[runner]`` holds the index of the item running, written right
    before it runs (a worker's parent reads it after a death). The loops are
    as tight as Python allows: a tiny task's cost per item is mostly this.

    Args:
        shape: how an item reads: ``SHAPE_UNARY`` (the argument),
            ``SHAPE_ARGS`` (a tuple of arguments), else ``(args, kwargs)``.

    Returns:
        ``(end, None)`` when every item returned; else the index of the item
        that raised and its exception (the items after it have not run).
    """
    append = done.append
    i = index
    try:
        if shape == SHAPE_UNARY:
            for i in range(index, end):
                marks[runner] = i
                append(fn(items[i]))
        elif shape == SHAPE_ARGS:
            for i in range(index, end):
                marks[runner] = i
                append(fn(*items[i]))
        else:
            for i in range(index, end):
                marks[runner] = i
                args, kwargs = items[i]
                append(fn(*args, **kwargs))
                del args, kwargs
    except BaseException as exc:
        return i, exc
    return end, None


def run_batch(
    fn: Callable[..., Any],
    items: Sequence[Any],
    index: int,
    end: int,
    shape: int,
    done: list[Any],
) -> tuple[int, BaseException | None]:
    """Run ``items[index:end]`` in turn, appending each value to ``done``,
    with no mark per item: the items of one argument, or of a tuple of
    arguments, go through ``map`` in C (twice as fast as ``run_span``'s loop
    for a trivial function), and ``list.extend`` keeps the values of the items
    before one that raises, so its index is still known.

    Returns:
        As ``run_span``.
    """
    before = len(done)
    try:
        if shape == SHAPE_UNARY:
            done.extend(map(fn, items[index:end]))
        elif shape == SHAPE_ARGS:
            done.extend(itertools.starmap(fn, items[index:end]))
        else:
            append = done.append
            for i in range(index, end):
                args, kwargs = items[i]
                append(fn(*args, **kwargs))
                del args, kwargs
    except BaseException as exc:
        return index + len(done) - before, exc
    return end, None


def run_outcomes(
    fn: Callable[..., Any],
    items: Sequence[Any],
    shape: int,
    failed: Callable[[BaseException], Any],
) -> list[Outcome]:
    """Run every item; each gets its own ``(ok, value_or_failed(exception))``.

    Args:
        shape: as ``run_span``'s.
        failed: what an item's exception becomes in its outcome (the
            exception itself on a thread; a picklable payload in a worker).
    """
    outcomes: list[Outcome] = []
    index, count = 0, len(items)
    while index < count:
        done: list[Any] = []
        index, exc = run_batch(fn, items, index, count, shape, done)
        outcomes.extend(zip(itertools.repeat(True), done))
        if exc is not None:
            outcomes.append((False, failed(exc)))
            del exc
            index += 1
    return outcomes
