"""Claimable futures, and every use nestpool makes of CPython's ``Future`` internals.

What it owns: ``SubtaskFuture``, a ``concurrent.futures.Future`` whose work
can be *claimed*: whichever comes first, a pool thread or a thread that waits
on the future, runs the subtask. So a thread that waits on a subtask that has
not started runs it itself, and waiting inside the subtask pool can never
deadlock, even with one thread and deep nesting (SPEC "Collated values"). That
covers ``result()``, ``exception()``, ``nestpool.gather`` and the standard
library's ``wait()`` and ``as_completed()``, which wait through the future's
waiter list (see ``_HelpingWaiters``). A waiter that passes ``timeout=0`` (a
poll) never runs anything itself. It also owns which threads claim what they
wait on (``become_helper``), and ``cancel_notified`` /
``start_unless_cancelled``, the two state moves nestpool makes on any future.

It must never start threads or own a pool (``_subtask_pool`` does), and never
import parent-side modules. What it assumes about CPython's ``Future``
internals is listed once, in the block below; any other module that reads a
future's private fields (``_collate`` does) relies on that same list.
"""

from __future__ import annotations

import _thread
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, FINISHED, PENDING, RUNNING
from typing import Any, Generic, overload

from . import _compute_slots
from ._compute_slots import IN_NESTPOOL
from ._typing import R, T
from ._waiting import wait_for

__all__ = [
    "SubtaskFuture",
    "become_helper",
    "cancel_notified",
    "is_helper",
    "start_unless_cancelled",
    "stop_helping",
]

# ------------------------------------------------ CPython's Future internals
#
# What nestpool relies on beyond the documented API of concurrent.futures and
# threading. Each holds in CPython 3.10, 3.11, 3.12 and 3.13 (the versions
# tested; tests/test_subtask_future.py checks the ones a test can see), GIL
# builds only. A new Python version is supported once these are checked again.
#
# 1. Fields. ``Future.__init__`` sets exactly ``_condition`` (a
#    ``threading.Condition`` over a new RLock), ``_state = PENDING``,
#    ``_result = None``, ``_exception = None``, ``_waiters = []`` and
#    ``_done_callbacks = []``; the instance has a ``__dict__``. SubtaskFuture
#    sets these itself instead of calling it, and makes ``_condition`` and
#    ``_waiters`` only when something reads them (``_MadeOnFirstUse``).
# 2. States. ``_state`` holds one of ``concurrent.futures._base``'s PENDING,
#    RUNNING, CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED; every change of it,
#    and of ``_waiters``, is made with ``_condition`` held (through ``with`` or
#    ``acquire()``). A SubtaskFuture's condition is over its own ``_lock``, so
#    holding that lock is holding the condition.
# 3. Outcome. ``set_result`` / ``set_exception`` store ``_result`` /
#    ``_exception`` before ``_state = FINISHED``, and FINISHED never changes
#    again: under the GIL, a thread that reads FINISHED can read the outcome
#    without the lock (here, and in ``_collate``'s settle). Then they call
#    ``_invoke_callbacks()``, which logs an Exception a callback raises and
#    lets any other BaseException through.
# 4. Cancelling. ``cancel()`` moves PENDING to CANCELLED and notifies the
#    condition, but tells the waiters of ``wait()`` / ``as_completed()``
#    nothing (gh-136655); ``set_running_or_notify_cancel()`` moves CANCELLED
#    to CANCELLED_AND_NOTIFIED and tells them, PENDING to RUNNING, and raises
#    from any other state.
# 5. Waiters. ``wait()`` and ``as_completed()`` make one ``_Waiter`` whose
#    ``event`` is a plain ``threading.Event``, ``append`` it to each future's
#    ``_waiters`` with the futures' conditions held, block in
#    ``waiter.event.wait(timeout)`` (``as_completed`` ``clear()``s and waits
#    on the same event again), and ``remove`` it at the end; a future tells a
#    waiter through its ``add_result`` / ``add_exception`` / ``add_cancelled``.
# 6. Conditions. ``threading.Condition`` keeps its lock in ``_lock`` (which
#    ``__enter__`` / ``__exit__`` use) and its sleepers in ``_waiters``, a
#    deque; ``wait()`` and ``notify()`` reach the lock only through
#    ``_is_owned``, ``_release_save`` and ``_acquire_restore``, which
#    ``_thread.RLock`` provides (``threading.RLock`` is a function returning
#    one).


def cancel_notified(future: Future[Any]) -> bool:
    """Cancel ``future`` and tell its waiters at once; False if it has started.

    ``Future.cancel()`` alone leaves a future CANCELLED, which
    ``concurrent.futures.wait`` and ``as_completed`` count as done only once
    an executor calls ``set_running_or_notify_cancel()`` on it (CPython
    gh-136655): a future the pool cancels, and so never reaches, would keep
    them waiting for their whole timeout. The move to CANCELLED_AND_NOTIFIED
    is made here, under the future's lock, so that no executor thread makes
    it a second time (which raises); executors take futures that may have
    been through here with ``start_unless_cancelled``.
    """
    if not future.cancel():
        return False
    with future._condition:
        if future._state == CANCELLED:
            future.set_running_or_notify_cancel()
    return True


def start_unless_cancelled(future: Future[Any]) -> bool:
    """``set_running_or_notify_cancel()`` for a future that ``cancel_notified``
    may have reached first.

    Returns:
        True if the future is now running (or already was); False if it was
        cancelled (its waiters are told, if they were not yet) or is done.
    """
    with future._condition:
        state = future._state
        if state in (PENDING, CANCELLED):
            return future.set_running_or_notify_cancel()
        return state == RUNNING


#: Threads that run a waited-on subtask themselves when nobody has started it:
#: subtask pool threads (so waiting inside a pool never deadlocks it) and the
#: threads that run process tasks in a worker (so a call-and-wait costs no
#: thread hop). Other threads (the parent's main thread, say) simply wait, and
#: the subtask runs on the pool, as the routing table says.
_helper_idents: set[int] = set()


def become_helper() -> None:
    """Mark the calling thread as one that runs unstarted subtasks it waits on."""
    _helper_idents.add(threading.get_ident())


def stop_helping() -> None:
    """Undo ``become_helper`` (the thread is about to end)."""
    _helper_idents.discard(threading.get_ident())


def is_helper() -> bool:
    """True when the calling thread runs the unstarted subtasks it waits on."""
    return threading.get_ident() in _helper_idents


def _forget_helpers_in_child() -> None:
    # A forked child has none of the parent's threads (and may reuse idents).
    _helper_idents.clear()


os.register_at_fork(after_in_child=_forget_helpers_in_child)


_Work = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _HelpingEvent(threading.Event):
    """The event a ``concurrent.futures`` waiter blocks on, taught to help first.

    ``wait()``/``as_completed()`` install a waiter on every future and then block
    on ``waiter.event.wait()``. Before blocking, this event runs, in the waiting
    thread, every subtask of the set that no thread has started yet.
    """

    def __init__(self) -> None:
        super().__init__()
        # A deque: as_completed() on n futures pops them one by one, each in
        # constant time.
        self.futures: deque[SubtaskFuture[Any]] = deque()

    def wait(self, timeout: float | None = None) -> bool:
        with IN_NESTPOOL:
            if (timeout is None or timeout > 0) and threading.get_ident() in _helper_idents:
                while self.futures and not self.is_set():
                    self.futures.popleft().run_here(helping=True)
            return wait_for(super().wait, timeout)


class _HelpingWaiters(list[Any]):
    """A future's waiter list that swaps in a ``_HelpingEvent`` for new waiters."""

    __slots__ = ("future_ref",)

    def __init__(self, future: SubtaskFuture[Any]) -> None:
        # (list's own __init__ with no argument does nothing: not called, as
        # this runs once per subtask)
        self.future_ref = weakref.ref(future)

    def append(self, waiter: Any) -> None:
        future = self.future_ref()
        if future is not None and future.pending_work():
            event = getattr(waiter, "event", None)
            if type(event) is threading.Event and not event.is_set():
                event = waiter.event = _HelpingEvent()
            if isinstance(event, _HelpingEvent):
                event.futures.append(future)
        super().append(waiter)


class _FutureCondition(threading.Condition):
    """A future's ``threading.Condition`` over the future's own lock, made with
    two stores instead of eight: the lock's methods are reached when called,
    not bound at creation.

    The methods a waiter uses (``wait``, ``notify``) are
    ``threading.Condition``'s own.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._waiters: deque[Any] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined,no-any-return]


class _MadeOnFirstUse(Generic[T]):
    """A future's attribute made the first time it is read, then found in the
    instance's ``__dict__`` (a non-data descriptor: it is not asked again).

    ``dict.setdefault`` stores it atomically, so two threads reading it at once
    get the same object (a waiter and a notifier must share one condition).
    """

    def __init__(self, make: Callable[[Any], T]) -> None:
        self.make = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _MadeOnFirstUse[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object, owner: type | None = None) -> T | _MadeOnFirstUse[T]:
        if instance is None:
            return self
        made: T = instance.__dict__.setdefault(self.name, self.make(instance))
        return made


class SubtaskFuture(Future[R]):
    """A ``concurrent.futures.Future`` whose waiter runs it if nobody started it."""

    # Made only when a thread waits on the future, cancels it or adds a
    # callback: a subtask that its caller runs itself, or finds done when it
    # reads it (call-and-wait, most items of a map), never needs them. One
    # future is made per subtask call, nestpool's hot path.
    # (pyright sees Future's instance attributes overridden by class-level
    # descriptors; reading one gives the same type)
    _condition: _MadeOnFirstUse[threading.Condition] = _MadeOnFirstUse(  # pyright: ignore[reportIncompatibleVariableOverride]
        lambda future: _FutureCondition(future._lock)
    )
    _waiters: _MadeOnFirstUse[list[Any]] = _MadeOnFirstUse(_HelpingWaiters)  # pyright: ignore[reportIncompatibleVariableOverride]

    def __init__(self, work: _Work) -> None:
        # Future.__init__'s fields, set here directly (it would make a
        # condition and a waiter list at once).
        # _thread.RLock: threading.RLock is a Python function around it.
        self._lock = _thread.RLock()
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []
        # A one-item list: list.pop() is atomic, so exactly one thread claims it.
        self._work: list[_Work] = [work]

    def pending_work(self) -> bool:
        """True while no thread has claimed this subtask."""
        return bool(self._work)

    def run_here(self, *, helping: bool) -> None:
        """Run the subtask in this thread unless another thread claimed it first.

        Args:
            helping: True when a waiting thread (not a pool thread) runs it.
                The outcome goes in the future either way, as a pool thread
                would record it (``exception()`` returns a ``SystemExit``,
                ``wait()`` returns); only a ``KeyboardInterrupt`` is also
                re-raised in a waiting thread, as an inline call does
                (``_inline.run_inline``).
        """
        try:
            fn, args, kwargs = self._work.pop()
        except IndexError:
            return
        # set_running_or_notify_cancel, without making the condition: under
        # the lock, as cancel() moves PENDING to CANCELLED under it too.
        with self._lock:
            started = self._state == PENDING
            if started:
                self._state = RUNNING
        if not started and not start_unless_cancelled(self):
            return  # cancelled (its waiters are told)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.set_exception(exc)
            if helping and isinstance(exc, KeyboardInterrupt):
                raise
            del exc
        else:
            # Future.set_result, less what cannot happen here: this thread
            # claimed the work and moved it to RUNNING, so no other thread can
            # have finished or cancelled it; and waiters told (and the
            # condition notified) only if some thread made them to wait (the
            # subtask hop is the hot path). Under the lock, which every
            # waiter holds while it adds itself.
            made = self.__dict__
            with self._lock:
                self._result = result
                self._state = FINISHED
                waiters = made.get("_waiters")
                if waiters:
                    for waiter in waiters:
                        waiter.add_result(self)
                condition = made.get("_condition")
                if condition is not None and condition._waiters:
                    condition.notify_all()
            if self._done_callbacks:
                self._invoke_callbacks()  # type: ignore[attr-defined]
        del fn, args, kwargs

    def result(self, timeout: float | None = None) -> R:
        if _compute_slots.semaphore is not None:
            with IN_NESTPOOL:
                self._help_or_wait(timeout)
                if self._state == FINISHED and self._exception is None:
                    return self._result  # type: ignore[no-any-return]
                return super().result(0)
        if self._work:
            self._run_here_if_helping(timeout)
        if self._state == FINISHED and self._exception is None:
            # Done (typically just now, by this thread): FINISHED never changes
            # again, so the value can be read without taking the lock.
            return self._result  # type: ignore[no-any-return]
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if _compute_slots.semaphore is not None:
            with IN_NESTPOOL:
                self._help_or_wait(timeout)
                if self._state == FINISHED:
                    return self._exception
                return super().exception(0)
        if self._work:
            self._run_here_if_helping(timeout)
        if self._state == FINISHED:
            return self._exception  # final: read without the lock, as result()
        return super().exception(timeout)

    def _run_here_if_helping(self, timeout: float | None) -> None:
        # A helper thread that waits (and does not poll) runs what nobody
        # claimed yet.
        if (timeout is None or timeout > 0) and threading.get_ident() in _helper_idents:
            self.run_here(helping=True)

    def _help_or_wait(self, timeout: float | None) -> None:
        # With compute slots: as result()'s own path, but the wait goes through
        # wait_for, so a task thread's slot is given up while it blocks.
        if self._work:
            self._run_here_if_helping(timeout)
        if self._state in (PENDING, RUNNING):
            wait_for(self._wait_done, timeout)

    def _wait_done(self, timeout: float | None) -> bool:
        with self._condition:
            if self._state in (PENDING, RUNNING):
                self._condition.wait(timeout)
            return self._state not in (PENDING, RUNNING)
