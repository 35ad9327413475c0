"""Stopping a process task that is already running: ``nestpool.stop`` and
the futures it works on.

A thread cannot be stopped, but a worker process can: stopping a running task
kills the worker that runs it (as a timeout does), the pool replaces the
worker, and the task's future ends cancelled. ``Future.cancel()`` keeps the
standard library's meaning (a running call cannot be cancelled) unless the
task asked for ``stop_on_cancel=True``; then ``cancel()`` on a running future
stops it too, which is what lets asyncio's cancellation (``wrap_future``,
``run_in_executor``, leaving ``async with task.amap(...)``) reach the worker.

What it owns: ``TaskFuture``, the future of a call (or of a map's chunk) sent
to the local engine, which knows how to ask its dispatcher to stop it; the
move of a running future to CANCELLED, made here, in the caller's thread, so
that ``wait()`` and ``as_completed()`` see it done at once; and ``stop()``.
It never touches the dispatcher's tables or a process: the dispatcher, told
through its inbox, kills the worker and settles the other tasks it held.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, RUNNING
from typing import Any

from ._futures import cancel_notified
from ._typing import R

__all__ = ["TaskFuture", "stop"]


class TaskFuture(Future[R]):
    """The future of a process task on the local engine: ``stop()`` reaches
    the worker running it; with ``stop_on_cancel``, so does ``cancel()``."""

    def __init__(self, stop_on_cancel: bool = False) -> None:
        super().__init__()
        self._stop_on_cancel = stop_on_cancel
        #: the dispatcher's ``stop``, weakly (set when the task is handed to
        #: it; None before and on other backends): a future the user keeps
        #: must not keep a finished pool's dispatcher alive
        self._stopper: Callable[[], Callable[[Future[Any]], None] | None] | None = None

    def cancel(self) -> bool:
        """``Future.cancel()``; with ``stop_on_cancel``, a running call is
        stopped (its worker killed and replaced) and True is returned."""
        if super().cancel():
            return True
        return self._stop_on_cancel and self._stop_running()

    def _stop_running(self) -> bool:
        """A running future: cancel it (and tell its waiters) here, then ask
        the dispatcher to stop its worker; False if it is not running (done)."""
        stopper = None if self._stopper is None else self._stopper()
        if stopper is None:
            return False  # not sent to an engine that can stop it (or it ended)
        with self._condition:
            if self._state != RUNNING:
                return False
            # What cancel() and set_running_or_notify_cancel() do together,
            # from RUNNING, which the standard library never leaves but for
            # FINISHED: wait() and as_completed() see the future done at once.
            # The dispatcher may be resolving it meanwhile: it finds it
            # cancelled and drops the outcome (_tasks.resolve).
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        stopper(self)
        return True


def stop(future: Future[Any]) -> bool:
    """Stop a process task, even one that is running: its future ends cancelled.

    A task that has not started is cancelled, as ``future.cancel()`` does. A
    running one is stopped: the worker process running it is killed (Python
    cannot interrupt a call in another process), the pool starts a
    replacement, and the future is cancelled at once (``wait()`` and
    ``as_completed()`` see it done). Nothing else is affected: with
    ``tasks_per_process`` > 1, the other tasks that worker was running run
    again on another worker, from the start (no try of ``retries=`` is
    counted), and every other task goes on. A stopped task is never retried.

    Where a task cannot be stopped, ``stop`` does what ``cancel()`` does: a
    future that is done, or that is not a process task's on the local engine
    (a subtask's, one run inline, one on Dask), gives False once it runs.

    Args:
        future: the future of a ``@process_task`` call or of ``Pool.submit``.

    Returns:
        True if the future is now cancelled (it was, it had not started, or
            it was stopped); False if it is done, or running where it cannot
            be stopped.

    Example:
        >>> with Pool():
        ...     future = crunch(batch)
        ...     ...
        ...     nestpool.stop(future)   # its worker is killed and replaced
        ...     future.cancelled()
        True
    """
    if cancel_notified(future) or future.cancelled():
        return True
    if isinstance(future, TaskFuture):
        return future._stop_running()
    return False
