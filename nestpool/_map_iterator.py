"""``MapIterator``: the public type of what every ``.map`` returns.

What it owns: the promise a map's iterator makes, whatever runs the calls
(the pool's engine, a Dask cluster, the caller's own thread, a progress bar
around one of those): it is an ``Iterator[R]`` that ``close()`` stops and that
works as a context manager. Each way of running a map subclasses it; a type
checker sees only this class, so ``with task.map(xs) as values:`` and
``contextlib.closing(task.map(xs))`` check, and ``MapIterator[int]`` can be
written in an annotation.

It must never import the engine: the worker side (``_inline``) subclasses it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Generic

from ._typing import R

__all__ = ["MapIterator", "as_map_iterator"]


class MapIterator(Iterator[R], Generic[R]):
    """What ``.map`` returns: an iterator of values that ``close()`` stops.

    ``task.map(...)``, ``pool.map(...)`` and ``subtask.map(...)`` all return
    one, with a pool open or not. A task's map is lazy and bounded: work
    starts at the call and more input is taken only as values are taken
    (``pool.map`` without a ``buffersize`` submits every call at the call, as
    ``concurrent.futures.Executor.map``). ``close()``, leaving a ``with``
    block, or dropping the iterator cancels what has not started (a
    ``pool.map`` dropped before its first value cancels nothing, as the
    standard library's). An item's exception is raised in its turn and ends
    the iteration, as ``concurrent.futures.Executor.map`` does.

    Not constructed directly: ``.map`` makes it. Write ``MapIterator[int]``
    in an annotation for the map of a task that returns ``int``.

    Example:
        >>> with crunch.map(batches, ordered=False) as totals:
        ...     first = next(totals)   # leaving the block cancels the rest
        >>> values: MapIterator[int] = crunch.map(batches)
    """

    __slots__ = ()

    @abstractmethod
    def close(self) -> None:
        """Stop: cancel every call that has not started; take no more input.

        Calls already running finish, and their values are dropped. Calling
        it again, or after the end, does nothing.

        Example:
            >>> totals = crunch.map(batches)
            >>> first = next(totals)
            >>> totals.close()   # no more batches are sent to workers
        """

    def _cancel_units(self) -> None:
        """Cancel the calls in flight now, safely while another thread is in
        ``next()`` (``amap``'s ``aclose()``); the next ``next()`` ends the map.
        Here: nothing (a map run in the caller has nothing in flight)."""

    def __enter__(self) -> MapIterator[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _ClosingIterator(MapIterator[R]):
    """Any iterator as a ``MapIterator``: ``close()`` closes it if it can."""

    __slots__ = ("_iterator",)

    def __init__(self, iterator: Iterator[R]) -> None:
        self._iterator = iterator

    def __next__(self) -> R:
        return next(self._iterator)

    def close(self) -> None:
        close: Any = getattr(self._iterator, "close", None)
        if close is not None:
            close()


def as_map_iterator(iterator: Iterator[R]) -> MapIterator[R]:
    """``iterator`` itself when it is a ``MapIterator``, else it wrapped as one
    (a route's map that fails at once is a plain generator)."""
    if isinstance(iterator, MapIterator):
        return iterator
    return _ClosingIterator(iterator)
