"""What a worker's runner does with one call: load its function, unpickle its
arguments, run it (one call, or a chunk's items in batches), and send its
outcomes back over the worker's channel.

What it owns: the worker's end of its pipe (``Channel``: sends serialised
between runners), the callables it was sent, kept by key in the same bounded
order as the parent's record of them (``FUNCTION_CACHE``), and the flushing
of a chunk's outcomes at least every ``FLUSH_SECONDS``, so a death costs at
most that much finished-but-unreported work. How the calls arrive, and the
worker's life, are ``_worker``'s.

It must never import parent-side modules (``_dispatcher``, ``_pool``, the
decorators).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from ._item_loop import run_batch, run_span
from ._protocol import (
    SHAPE_SINGLE,
    Ack,
    ArgsFailed,
    Booted,
    Call,
    InitFailed,
    Ready,
    Result,
    batch_mark,
    pack,
    pack_outcomes,
)
from ._serialize import exception_payload, loads, pickling_error

__all__ = ["FLUSH_SECONDS", "FUNCTION_CACHE", "Channel", "load_function", "run_call"]

FLUSH_SECONDS = 0.005
#: How many callables a worker keeps by key. The parent records which keys it
#: sent each worker with the same rule (least recently sent goes first), in
#: the order of the channel, so both sides always agree on what the worker has.
FUNCTION_CACHE = 64


class Channel:
    """The worker's end of its pipe; sends are serialised between runners."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: Booted | Ready | InitFailed | Ack | Result | ArgsFailed) -> None:
        self.send_bytes(pack(message))

    def send_bytes(self, data: bytes) -> None:
        try:
            with self.lock:
                self.conn.send_bytes(data)
        except OSError:
            # The parent is gone; the main thread sees EOF and exits.
            pass


_loaded: OrderedDict[bytes, Callable[..., Any]] = OrderedDict()
_loaded_lock = threading.Lock()


def load_function(key: bytes, pickled: bytes | None) -> Callable[..., Any]:
    """The callable of that key, unpickled once while it is used.

    Raises:
        LookupError: the worker was not sent that callable (a bug in nestpool).
        BaseException: what unpickling it raised.
    """
    with _loaded_lock:
        cached = _loaded.get(key)
        if cached is not None:
            _loaded.move_to_end(key)
            return cached
    if pickled is None:
        raise LookupError("this worker was not sent the function")
    fn: Callable[..., Any] = loads(pickled)
    with _loaded_lock:
        _loaded[key] = fn
        if len(_loaded) > FUNCTION_CACHE:
            _loaded.popitem(last=False)
    return fn


def run_call(runner: int, call: Call, pickled: bytes | None, channel: Channel, marks: Any) -> None:
    task_id, name, shape, exact = call.task_id, call.name, call.shape, call.exact
    try:
        fn = load_function(call.function[0], pickled)
    except BaseException as exc:
        error = pickling_error(name, "function (unpickling in the worker)", exc)
        channel.send(ArgsFailed(task_id, exception_payload(error, name)))
        return
    try:
        items: Sequence[Any] = loads(call.args)
    except BaseException as exc:
        error = pickling_error(name, "argument (unpickling in the worker)", exc)
        channel.send(ArgsFailed(task_id, exception_payload(error, name)))
        return
    del call
    if type(items) is range:
        # A map over a range sends its chunks as ranges; indexing a range
        # makes each int with generic arithmetic, listing it is a C loop.
        items = list(items)
    if shape == SHAPE_SINGLE and len(items) == 1:
        _run_single(task_id, name, fn, items[0], channel)
        return
    _run_chunk(runner, task_id, name, fn, items, shape, channel, marks, exact)


def _run_single(
    task_id: int, name: str, fn: Callable[..., Any], item: tuple[Any, ...], channel: Channel
) -> None:
    """One call (``task(...)``, ``Pool.submit``): its value or its exception."""
    args, kwargs = item
    del item
    started = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        outcome = [(False, exception_payload(exc, name))]
        del exc
        busy = time.perf_counter() - started
        _send_outcomes(channel, name, task_id, first=0, values=[], outcomes=outcome, busy=busy)
        return
    del args, kwargs
    busy = time.perf_counter() - started
    _send_outcomes(channel, name, task_id, first=0, values=[value], busy=busy)


#: Items quicker than this (measured on the batch before) run in batches with
#: one mark (``batch_mark``) unless the call is ``exact``: a mark per item
#: costs a trivial item as much as the item itself, and a slower item's mark
#: is under 0.1% of it. Among items this quick, which one a death interrupted
#: is rarely the question; the parent finds out by running them again.
UNMARKED_ITEM_SECONDS = 0.00002
#: A chunk runs in batches; each batch is at most this many times the last
#: (the first is one item), and aims at FLUSH_SECONDS of work.
_BATCH_GROWTH = 8
_MAX_BATCH = 1 << 16


def _run_chunk(
    runner: int,
    task_id: int,
    name: str,
    fn: Callable[..., Any],
    items: Sequence[Any],
    shape: int,
    channel: Channel,
    marks: Any,
    exact: bool,
) -> None:
    """Run a chunk's items in turn, in batches, flushing outcomes every
    ``FLUSH_SECONDS``.

    Each item's index is written to this runner's mark right before the item
    runs, so the parent knows which item a death interrupted; but a batch of
    items quicker than ``UNMARKED_ITEM_SECONDS`` gets one mark for the batch
    (``batch_mark``) and runs through ``run_batch``, twice as fast, unless
    ``exact`` (a call with a timeout, or run again after a death in such a
    batch). The first batch is one item and each aims at ``FLUSH_SECONDS`` of
    work at the speed just measured; the clock is read once per batch.

    Args:
        shape: how an item reads: ``SHAPE_UNARY`` (the argument), ``SHAPE_ARGS``
            (a tuple of arguments) or ``SHAPE_SINGLE`` (``(args, kwargs)``).
    """
    # While every item succeeds, only the values are kept and sent (a third
    # of the pickling of (ok, value) pairs, per item); from the first failure
    # on, this flush carries (ok, value_or_exception) outcomes.
    values: list[Any] = []
    outcomes: list[tuple[bool, Any]] | None = None
    count = len(items)
    first = index = 0  # the first item of the next flush; the next to run
    batch = 1
    marked = True  # one mark per item (until the items prove tiny)
    clock = time.perf_counter
    flushed_at = started = clock()
    while index < count:
        end = min(count, index + batch)
        batch_started = clock()
        done: list[Any] = values if outcomes is None else []
        if marked:
            end, exc = run_span(fn, items, index, end, shape, done, marks, runner)
        else:
            marks[runner] = batch_mark(index, end)
            end, exc = run_batch(fn, items, index, end, shape, done)
        if exc is not None:
            if outcomes is None:
                outcomes = [(True, v) for v in values]
            else:
                outcomes.extend(zip(itertools.repeat(True), done))
            outcomes.append((False, exception_payload(exc, name)))
            del exc
            end += 1
        elif outcomes is not None:
            outcomes.extend(zip(itertools.repeat(True), done))
        executed = end - index
        index = end
        del done
        now = clock()
        # The next batch: FLUSH_SECONDS of work at the speed just measured.
        per_item = (now - batch_started) / executed
        target = int(FLUSH_SECONDS / per_item) if per_item > 0 else _MAX_BATCH
        batch = max(1, min(target, batch * _BATCH_GROWTH, _MAX_BATCH))
        marked = exact or per_item >= UNMARKED_ITEM_SECONDS
        if index >= count or now - flushed_at >= FLUSH_SECONDS:
            _send_outcomes(
                channel,
                name,
                task_id,
                first=first,
                values=values,
                outcomes=outcomes,
                final=index >= count,
                busy=now - started,
            )
            first = index
            values = []
            outcomes = None
            flushed_at = started = now
    if not count:
        _send_outcomes(channel, name, task_id, first=0, values=[], busy=0.0)


def _send_outcomes(
    channel: Channel,
    name: str,
    task_id: int,
    *,
    first: int,
    values: list[Any],
    outcomes: list[tuple[bool, Any]] | None = None,
    final: bool = True,
    busy: float,
) -> None:
    """Send a ``Result``: the items from ``first`` on, as ``values`` while every
    one succeeded, else as ``outcomes`` (``(ok, value_or_exception)`` pairs)."""
    size = len(values) if outcomes is None else len(outcomes)
    packed, plain = pack_outcomes(name, values, outcomes)
    channel.send(Result(task_id, first, size, final, busy, packed, plain))
