"""``gather``: wait for futures and return their values in the order given.

What it owns: waiting on any mix of ``concurrent.futures`` futures (nestpool's
process tasks and subtasks, inline ones, the standard library's) until all are
done or, by default, the first fails. A pool thread that gathers runs the
subtasks nobody has started yet itself, so gathering inside a thread pool
never deadlocks it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import CancelledError, Future
from typing import Any, Literal, cast, overload

from ._compute_slots import IN_NESTPOOL
from ._futures import SubtaskFuture, is_helper
from ._subtask_loop import refuse_wait_on_loop
from ._typing import FutureLike, T
from ._waiting import OneShotEvent, wait_event

__all__ = ["gather"]


@overload
def gather(
    futures: Iterable[FutureLike[T]], *, return_exceptions: Literal[False] = False
) -> list[T]: ...
@overload
def gather(
    futures: Iterable[FutureLike[T]], *, return_exceptions: bool
) -> list[T | BaseException]: ...
# mypy joins a list display of a Future[int] and a Future[str] to list[object]
# before it solves T; this last overload types gather([f_int, f_str]) as
# list[object] there rather than an error (pyright solves T = int | str above).
@overload
def gather(  # pyright: ignore[reportOverlappingOverload]
    futures: Iterable[Future[Any]], *, return_exceptions: bool = False
) -> list[object]: ...
def gather(futures: Iterable[FutureLike[Any]], *, return_exceptions: bool = False) -> list[Any]:
    """Wait for futures and return their values, in the order given.

    Works on any ``concurrent.futures.Future`` (nestpool's, inline ones, the
    standard library's). A thread that gathers subtasks which have not started
    yet runs them itself, so gathering inside a thread pool never deadlocks.

    Args:
        futures (Iterable[Future[T]]): the futures to wait for
            (``concurrent.futures.Future``), of one type or of several.
        return_exceptions: False (default): raise the first failure as soon as
            it happens, without waiting for the others. True: wait for all and
            put each failure's exception (``CancelledError`` for a cancelled
            future) in the list at its position.

    Returns:
        values (list[T]): one per future, in the order given; with
            ``return_exceptions=True`` a ``list[T | BaseException]``. For
            futures of several types ``T`` is their union (pyright), or
            ``object`` (mypy, for a list display).

    Raises:
        Exception: without ``return_exceptions``, the first exception raised by
            a future (or ``CancelledError`` for a cancelled one).

    Example:
        >>> totals = gather([crunch(batch) for batch in batches])
        >>> pages = gather(fetch(u) for u in urls)   # inside a process task
    """
    fs = cast("list[Future[Any]]", list(futures))
    if not fs:
        return []
    failed = _wait_all(fs, stop_on_failure=not return_exceptions)
    if failed is not None:
        failed.result()  # raises its exception (CancelledError if cancelled)
    if return_exceptions:
        values: list[Any] = []
        for f in fs:
            if f.cancelled():
                values.append(CancelledError())
            else:
                exc = f.exception()
                values.append(f.result() if exc is None else exc)
        return values
    return [f.result() for f in fs]


class _Gathering:
    """The done-callback of one ``gather``: counts the futures that are done and
    notes the first that failed.

    Done-callbacks rather than ``concurrent.futures.wait``: ``wait`` only learns
    of a cancellation when an executor calls ``set_running_or_notify_cancel``,
    so it would wait for a cancelled future until its executor reached it, and
    forever for one no executor runs. A callback runs at ``cancel()``.
    """

    __slots__ = ("event", "failed", "left", "lock", "stop_on_failure")

    def __init__(self, count: int, stop_on_failure: bool) -> None:
        self.left = count
        self.stop_on_failure = stop_on_failure
        self.failed: Future[Any] | None = None
        self.lock = threading.Lock()
        self.event = OneShotEvent()

    def __call__(self, future: Future[Any]) -> None:
        failure = self.stop_on_failure and (future.cancelled() or future.exception() is not None)
        with self.lock:
            self.left -= 1
            if failure and self.failed is None:
                self.failed = future
            if self.left == 0 or self.failed is not None:
                self.event.set()


def _wait_all(fs: list[Future[Any]], *, stop_on_failure: bool) -> Future[Any] | None:
    """Wait until every future is done, or (``stop_on_failure``) one fails;
    return the first that failed, or None."""
    unique = list(dict.fromkeys(fs))
    refuse_wait_on_loop("gather()", unique)  # else a deadlock on the loop's own thread
    gathering = _Gathering(len(unique), stop_on_failure)
    for f in unique:
        f.add_done_callback(gathering)  # runs at once for one already done
    with IN_NESTPOOL:
        if is_helper():
            # A pool thread that waits runs the subtasks nobody has started yet,
            # in the given order, so that gathering inside the pool never deadlocks.
            for f in unique:
                if gathering.event.is_set():
                    break
                if isinstance(f, SubtaskFuture) and f.pending_work():
                    f.run_here(helping=True)
        wait_event(gathering.event)
    return gathering.failed
