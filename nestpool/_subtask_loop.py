"""The event loop that runs async subtasks, one per process, and their futures.

What it owns: ``SubtaskLoop``, an asyncio event loop running for ever on a
daemon thread of its own (``nestpool-loop-PID``), made on first use and kept
for the process's life, as the subtask thread pool is; ``AsyncSubtaskFuture``,
the ``concurrent.futures.Future`` of a coroutine scheduled there, which stays
PENDING while the coroutine runs so that ``cancel()`` cancels the coroutine's
task (as ``asyncio.run_coroutine_threadsafe``'s does), and refuses to block the
loop's own thread on an outcome that only that thread can produce; and
``run_now``, an async subtask run to completion for the inline cells of the
routing table.

Submitting from another thread appends to an inbox and wakes the loop only
when it is not already due to drain it: a map that submits a thousand
coroutines costs the loop one wake-up, not a thousand self-pipe writes.

It must never import parent-side modules (a worker imports it), and never
block the loop's thread: every wait that thread could make on its own work is
refused with a ``RuntimeError`` that says what to do instead.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED, FINISHED, PENDING
from typing import Any

from . import _compute_slots
from ._compute_slots import IN_NESTPOOL
from ._typing import R
from ._waiting import wait_for

__all__ = [
    "ASYNC_MAP_IN_FLIGHT",
    "AsyncSubtaskFuture",
    "SubtaskLoop",
    "on_loop_thread",
    "refuse_wait_on_loop",
    "run_now",
    "this_process_loop",
]

#: coroutines of an async subtask's map kept in flight when no buffersize is
#: given: enough that the waits of a large map overlap, few enough that an
#: endless input is still read lazily
ASYNC_MAP_IN_FLIGHT = 1000

#: the idents of this process's loop threads (one, once made)
_loop_idents: set[int] = set()

_WAIT_ON_LOOP = (
    "cannot wait for an async subtask on nestpool's event loop thread ({what}): the "
    "loop would wait on itself. In a coroutine, write "
    "'await asyncio.wrap_future(future)' for one call, "
    "'await asyncio.gather(*map(asyncio.wrap_future, futures))' for several, "
    "and 'async for value in task.amap(...)' for a map."
)


def on_loop_thread() -> bool:
    """True in the thread of this process's subtask event loop."""
    return threading.get_ident() in _loop_idents


def refuse_wait_on_loop(what: str, futures: Iterable[Future[Any]] | None = None) -> None:
    """Raise the ``RuntimeError`` that replaces a deadlock: a wait, on the
    loop's own thread, for async subtasks that are not done.

    Args:
        what: the wait, as the message names it (``"gather()"``).
        futures: the futures waited for; with None, any wait is refused.
    """
    if threading.get_ident() not in _loop_idents:
        return
    if futures is not None and not any(
        isinstance(f, AsyncSubtaskFuture) and not f.done() for f in futures
    ):
        return
    raise RuntimeError(_WAIT_ON_LOOP.format(what=what))


class AsyncSubtaskFuture(Future[R]):
    """The future of an async subtask: a coroutine scheduled on an event loop.

    It stays PENDING until the coroutine's task ends (``running()`` is False
    meanwhile), so ``cancel()`` succeeds while the coroutine runs, and cancels
    its task. ``result()`` and ``exception()`` called on the loop's own thread
    before it is done raise ``RuntimeError`` rather than wait for ever.
    """

    def __init__(self, loop: SubtaskLoop) -> None:
        super().__init__()
        self._loop = loop
        self._task: asyncio.Future[Any] | None = None

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        with self._condition:
            if self._state == CANCELLED:
                # No executor will call this for it: tell wait() and
                # as_completed() now (CPython gh-136655).
                self.set_running_or_notify_cancel()
        task = self._task
        if task is not None:
            self._loop.cancel_task(task)
        return True

    def result(self, timeout: float | None = None) -> R:
        if self._state != FINISHED and self._wait(timeout, "result()"):
            timeout = 0  # waited already
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state != FINISHED and self._wait(timeout, "exception()"):
            timeout = 0
        return super().exception(timeout)

    def _wait(self, timeout: float | None, what: str) -> bool:
        """Refuse a wait on the loop's own thread; wait here if nestpool's
        own way of waiting is needed (True), else leave it to ``Future``."""
        if timeout is not None and timeout <= 0:
            return False  # a poll never blocks
        if threading.get_ident() in _loop_idents and not self.done():
            raise RuntimeError(_WAIT_ON_LOOP.format(what=what))
        # Through wait_for: in slices in the main thread (Ctrl-C), and giving
        # a task thread's compute slot up while it waits.
        if _compute_slots.semaphore is None and (
            threading.current_thread() is not threading.main_thread()
        ):
            return False
        with IN_NESTPOOL:
            wait_for(self._wait_done, timeout)
        return True

    def _wait_done(self, timeout: float | None) -> bool:
        with self._condition:
            if not self.done():
                self._condition.wait(timeout)
            return self.done()


class SubtaskLoop:
    """An event loop on a daemon thread of its own, running for ever.

    ``submit`` schedules a coroutine function's call on it from any thread and
    returns its ``AsyncSubtaskFuture``.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.name = name
        self._inbox: deque[tuple[AsyncSubtaskFuture[Any], Callable[..., Any], Any, Any]] = deque()
        #: True from a wake-up's scheduling until its drain starts
        self._wake_due = False
        self.ident: int | None = None
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.ident = threading.get_ident()
        _loop_idents.add(self.ident)
        started.set()
        self.loop.run_forever()

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncSubtaskFuture[Any]:
        """Schedule ``fn(*args, **kwargs)`` (a coroutine function) on the loop."""
        future: AsyncSubtaskFuture[Any] = AsyncSubtaskFuture(self)
        if threading.get_ident() == self.ident:
            self._start(future, fn, args, kwargs)
            return future
        self._inbox.append((future, fn, args, kwargs))
        if not self._wake_due:
            # Cleared by _drain before it empties the inbox: an item appended
            # after that either is drained there or finds the flag clear.
            self._wake_due = True
            self.loop.call_soon_threadsafe(self._drain)
        return future

    def cancel_task(self, task: asyncio.Future[Any]) -> None:
        if threading.get_ident() == self.ident:
            task.cancel()
        else:
            self.loop.call_soon_threadsafe(task.cancel)

    def _drain(self) -> None:
        self._wake_due = False
        inbox = self._inbox
        while inbox:
            self._start(*inbox.popleft())

    def _start(
        self,
        future: AsyncSubtaskFuture[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        if future._state != PENDING:
            return  # cancelled before it started (read without its lock)
        try:
            awaitable = fn(*args, **kwargs)
            if inspect.iscoroutine(awaitable):
                # One task that runs the coroutine and settles the future as
                # it ends: no done-callback, scheduled by the loop, per item.
                task = self.loop.create_task(_drive(future, awaitable))
            else:
                task = asyncio.ensure_future(awaitable, loop=self.loop)
                task.add_done_callback(functools.partial(_settle, future))
        except BaseException as exc:
            _settle_exception(future, exc)
            return
        future._task = task
        if future._state != PENDING:
            task.cancel()  # cancelled while the task was being made


async def _drive(future: AsyncSubtaskFuture[Any], coroutine: Any) -> None:
    """Run ``coroutine`` and put its outcome into ``future`` (the task of an
    async subtask, on the loop's thread)."""
    try:
        value = await coroutine
    except asyncio.CancelledError:
        future._task = None
        future.cancel()  # False if it was cancelled first
        raise  # the task ends cancelled, as the coroutine's own would
    except Exception as exc:
        future._task = None
        _settle_exception(future, exc)
        return  # kept by the future: the task has nothing left to report
    except BaseException as exc:
        # SystemExit, KeyboardInterrupt: the future has it, and the loop
        # sees it raised, as from the coroutine's own task.
        future._task = None
        _settle_exception(future, exc)
        raise
    future._task = None
    try:
        future.set_result(value)
    except InvalidStateError:
        pass  # cancelled meanwhile: its outcome is CancelledError


def _settle_exception(future: Future[Any], exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except InvalidStateError:
        pass  # cancelled meanwhile


def _settle(future: AsyncSubtaskFuture[Any], task: asyncio.Future[Any]) -> None:
    # On the loop's thread, as an awaitable's task ends (an awaitable that is
    # not a coroutine): its outcome into the future, unless the future was
    # cancelled first.
    future._task = None
    if task.cancelled():
        future.cancel()
        return
    exc = task.exception()
    try:
        if exc is None:
            future.set_result(task.result())
        else:
            future.set_exception(exc)
    except InvalidStateError:
        pass  # cancelled meanwhile: its outcome is CancelledError


_this_process_loop: SubtaskLoop | None = None
_this_process_loop_lock = threading.Lock()
#: loops inherited through fork: kept, never closed or collected here (their
#: thread does not exist in this process, and closing one that looks running
#: raises)
_inherited: list[SubtaskLoop] = []


def this_process_loop() -> SubtaskLoop:
    """This process's subtask event loop, made on first use and kept."""
    global _this_process_loop
    loop = _this_process_loop
    if loop is None:
        with _this_process_loop_lock:
            loop = _this_process_loop
            if loop is None:
                loop = _this_process_loop = SubtaskLoop(f"nestpool-loop-{os.getpid()}")
    return loop


def run_now(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> AsyncSubtaskFuture[Any]:
    """Run an async subtask to completion on this process's loop while the
    caller waits; return its done future (the inline cells of the routing
    table). On the loop's own thread the caller cannot wait: the coroutine is
    scheduled there and its pending future returned, to be awaited.

    A ``KeyboardInterrupt`` in the wait cancels the coroutine and is raised.
    """
    future = this_process_loop().submit(fn, args, kwargs)
    if threading.get_ident() in _loop_idents or future.done():
        return future
    try:
        with IN_NESTPOOL:
            wait_for(future._wait_done)
    except BaseException:
        future.cancel()
        raise
    return future


def _forget_loop_in_child() -> None:
    # A forked child has none of the parent's threads: the loop's thread is
    # not running here. Start afresh on demand.
    global _this_process_loop, _this_process_loop_lock
    if _this_process_loop is not None:
        _inherited.append(_this_process_loop)
    _this_process_loop = None
    _this_process_loop_lock = threading.Lock()
    _loop_idents.clear()


os.register_at_fork(after_in_child=_forget_loop_in_child)
