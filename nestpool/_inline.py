"""Running a call right here, in the calling thread, with the result in a future.

Used for the inline cells of the routing table (no pool open; a process task
called inside a worker; ``processes=0`` / ``threads=0``). Exceptions travel
inside the future, never out of the call; only ``KeyboardInterrupt`` is also
re-raised, so that Ctrl-C still stops the program.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from ._map_iterator import MapIterator
from ._typing import R

__all__ = ["InlineMap", "map_inline", "run_inline"]


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
