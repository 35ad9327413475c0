"""Running a call right here, in the calling thread, with the result in a future.

Used for the inline cells of the routing table (no pool open; a process task
called inside a worker; ``processes=0`` / ``threads=0``). Exceptions travel
inside the future, never out of the call; only ``KeyboardInterrupt`` is also
re-raised, so that Ctrl-C still stops the program. ``InlineBackend`` is the
``_backend.Backend`` of a ``Pool(processes=0)``.

Worker processes import this module: it must never import parent-side ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ._map_iterator import MapIterator, as_map_iterator
from ._typing import R

if TYPE_CHECKING:
    from ._backend import Work

__all__ = ["InlineBackend", "InlineMap", "map_inline", "run_inline"]


def run_inline(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
    """Call ``fn`` now; return a completed future holding its value or exception."""
    future: Future[R] = Future()
    future.set_running_or_notify_cancel()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        future.set_exception(exc)
        if isinstance(exc, KeyboardInterrupt):
            raise
    else:
        future.set_result(result)
    return future


class InlineMap(MapIterator[R]):
    """The ``MapIterator`` of an inline ``map``: ``fn`` called over the zipped
    iterables, one item per ``next()``, here. An exception ends it (the next
    ``next()`` raises ``StopIteration``), as with the pool's."""

    __slots__ = ("_fn", "_items")

    def __init__(self, fn: Callable[..., R], iterables: tuple[Iterable[Any], ...]) -> None:
        self._fn: Callable[..., R] | None = fn
        self._items: Iterator[tuple[Any, ...]] | None = zip(*iterables, strict=False)

    def __next__(self) -> R:
        items, fn = self._items, self._fn
        if items is None or fn is None:
            raise StopIteration
        try:
            return fn(*next(items))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop: no more calls; drop the input."""
        self._items = self._fn = None


def map_inline(fn: Callable[..., R], iterables: tuple[Iterable[Any], ...]) -> MapIterator[R]:
    """Lazily call ``fn`` over the zipped iterables, one item per ``next()``."""
    return InlineMap(fn, iterables)


def _results_in_turn(calls: list[Future[R]]) -> Iterator[R]:
    """The calls' values in order, each dropped once handed out; the first
    exception is raised in its turn and ends them."""
    calls.reverse()
    while calls:
        yield calls.pop().result()


class InlineBackend:
    """``Pool(processes=0)``: every process task runs in the caller, at the
    call (debugging, pdb, coverage); a task's map calls one item per
    ``next()``, ``pool.map`` every item at the call (``submit_all``).
    There are no workers, nothing to wait for and nothing to stop."""

    __slots__ = ("_description",)

    def __init__(self, description: str) -> None:
        #: the pool's options, for its repr
        self._description = description

    def submit(self, work: Work, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        return run_inline(work.fn, args, kwargs)

    def map(
        self,
        work: Work,
        iterables: tuple[Iterable[Any], ...],
        *,
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        timeout: float | None,
        submit_all: bool = False,
    ) -> MapIterator[Any]:
        if submit_all:
            # Executor.map's way: every call made now; the values (or the
            # first exception, which ends the map) handed out in turn.
            calls = [run_inline(work.fn, args, {}) for args in zip(*iterables, strict=False)]
            return as_map_iterator(_results_in_turn(calls))
        return map_inline(work.fn, iterables)

    def processes(self) -> int:
        return 0

    def slots(self) -> int:
        return 1  # one task at a time: the caller's

    def worker_pids(self) -> list[int]:
        return []

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        pass

    def terminate(self) -> None:
        pass

    def ready(self) -> None:
        pass

    def describe(self) -> str:
        return self._description
