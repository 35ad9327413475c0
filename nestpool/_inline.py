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

from ._typing import R

__all__ = ["map_inline", "run_inline"]


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


def map_inline(fn: Callable[..., R], iterables: tuple[Iterable[Any], ...]) -> Iterator[R]:
    """Lazily call ``fn`` over the zipped iterables, one item per ``next()``."""
    for args in zip(*iterables, strict=False):
        yield fn(*args)
