"""The per-process thread pool that runs ``@thread_subtask`` calls.

What it owns: a ``ThreadPoolExecutor``-like pool whose futures can be *claimed*:
whichever comes first, a pool thread or a thread that waits on the future, runs
the subtask. So a thread that waits on a subtask that has not started runs it
itself, and waiting inside the pool can never deadlock, even with one thread
and deep nesting (SPEC "Collated values"). It covers ``result()``,
``exception()``, ``nestpool.gather`` and the standard library's ``wait()`` and
``as_completed()``, which wait through the future's waiter list (see
``_HelpingWaiters``). A waiter that passes ``timeout=0`` (a poll) never runs
anything itself.

It also owns the one persistent pool of a worker process (``process_pool``),
created on first use and kept for the worker's life, which the local engine and
the Dask backend share. It must never import parent-side modules.
"""

from __future__ import annotations

import _thread
import itertools
import logging
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, FINISHED, PENDING, RUNNING
from typing import Any, Generic, overload

from . import _compute_slots
from ._compute_slots import IN_NESTPOOL
from ._errors import PoolClosedError
from ._typing import R, T
from ._waiting import POLL_SECONDS, wait_for

__all__ = [
    "SubtaskFuture",
    "SubtaskPool",
    "become_helper",
    "cancel_notified",
    "default_threads",
    "is_helper",
    "process_pool",
    "start_unless_cancelled",
    "stop_helping",
]

logger = logging.getLogger("nestpool")

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


def default_threads() -> int:
    """``ThreadPoolExecutor``'s default size: min(32, cpu_count + 4), counting
    the CPUs as it does (``os.process_cpu_count()`` from Python 3.13)."""
    counter = getattr(os, "process_cpu_count", os.cpu_count)
    return min(32, (counter() or 1) + 4)


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

    # Reads of a FINISHED future's outcome without the lock (result(),
    # exception(), _collate's settle) rely on the GIL and on the outcome being
    # stored before the state, as here and in the standard library's
    # set_result/set_exception: nestpool supports GIL builds only.

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


_pool_counter = itertools.count(1)


class SubtaskPool:
    """A persistent thread pool of claimable futures (see the module docstring).

    Threads are started on demand, up to ``max_workers``, as in
    ``ThreadPoolExecutor``; they are named ``nestpool-subtask-N_M``.
    """

    def __init__(self, max_workers: int | None = None, name: str = "") -> None:
        if max_workers is None:
            max_workers = default_threads()
        if max_workers <= 0:
            raise ValueError("threads must be greater than 0 for a SubtaskPool")
        self.max_workers = max_workers
        self.name: str = name or f"nestpool-subtask-{next(_pool_counter)}"
        self._queue: queue.SimpleQueue[SubtaskFuture[Any] | None] = queue.SimpleQueue()
        # A token per thread about to wait for work that no submitted item has
        # claimed yet: a thread appends one, a submit pops one (or, finding
        # none, starts a thread). At max_workers a thread may announce itself
        # for an item already queued, leaving a spare token: harmless, as no
        # thread could be started then anyway. A deque, not a counter under
        # _lock: a pool thread that held _lock when the GIL was taken from it
        # would make a submitting thread block on _lock, and the two would
        # then hand the GIL back and forth at every call (a convoy that
        # doubles the cost of a call-and-wait).
        self.idle: deque[None] = deque()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: notified (under _lock) as each thread ends; _live counts the others
        self._ended = threading.Condition(self._lock)
        self._live = 0
        self._shutdown = False

    def submit(
        self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> SubtaskFuture[R]:
        """Queue ``fn(*args, **kwargs)``; return its claimable future.

        Raises:
            PoolClosedError: the pool was shut down.
        """
        future: SubtaskFuture[R] = SubtaskFuture((fn, args, kwargs))
        with self._lock:
            # Under the lock, so no item can land behind shutdown's sentinels,
            # and each item is matched with a thread that will take it: an idle
            # thread's next get() (a token), or a new thread's first one.
            if self._shutdown:
                raise PoolClosedError("cannot schedule new futures after shutdown")
            self._queue.put(future)
            if self.idle:
                # (only submitters pop, under _lock: the check holds)
                self.idle.pop()
            elif len(self._threads) < self.max_workers:
                try:
                    self._start_thread()
                except BaseException:
                    # The caller is told the call failed: it must not run
                    # later on another thread (a pool thread skips it).
                    cancel_notified(future)
                    raise
        return future

    def _start_thread(self) -> None:
        # Called with self._lock held; the new thread does not take the lock
        # before its first get(), so start() cannot deadlock on it.
        thread = threading.Thread(
            target=_thread_main,
            args=(self,),
            name=f"{self.name}_{len(self._threads)}",
            daemon=True,
        )
        # Listed before it starts: its first subtask may run (and ask
        # thread_idents()) before start() returns here.
        self._threads.append(thread)
        self._live += 1
        try:
            thread.start()
        except BaseException:
            self._threads.remove(thread)
            self._live -= 1
            raise

    def thread_idents(self) -> set[int]:
        """The idents of the pool's live threads (for tests and diagnostics)."""
        return {t.ident for t in self._threads if t.ident is not None and t.is_alive()}

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; optionally cancel what has not started; join threads."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    cancel_notified(item)
        for _ in threads:
            self._queue.put(None)
        if wait:
            # Not Thread.join(): a Ctrl-C that interrupts it on Python 3.11
            # marks a running thread as stopped (bpo-45274's fix); and waits
            # in slices let that Ctrl-C through promptly (POLL_SECONDS).
            me = 1 if threading.current_thread() in threads else 0
            with self._ended:
                while self._live > me:
                    self._ended.wait(POLL_SECONDS)


def _thread_main(pool: SubtaskPool) -> None:
    work_queue = pool._queue
    announce_idle = pool.idle.append
    become_helper()
    first = True  # the submit that started this thread counted on its first get()
    try:
        while True:
            if not first:
                announce_idle(None)
            first = False
            item = work_queue.get()
            if item is None:
                return
            if item._work:  # else its waiter ran it already
                try:
                    item.run_here(helping=False)
                except BaseException:
                    # The call's own exception is its future's outcome; only a
                    # done-callback's SystemExit (say) gets here (Future logs
                    # an Exception). The thread lives on: the pool counts it.
                    logger.exception("nestpool: a subtask's done-callback raised")
            del item
    finally:
        stop_helping()
        with pool._ended:
            pool._live -= 1
            pool._ended.notify_all()


_process_pool: SubtaskPool | None = None
_process_pool_lock = threading.Lock()


def process_pool(threads: int | None) -> SubtaskPool:
    """This process's persistent subtask pool, created on first use.

    A worker process (local engine or Dask) keeps one for its whole life; every
    process task that runs there shares it.
    """
    global _process_pool
    pool = _process_pool
    if pool is None:
        with _process_pool_lock:
            pool = _process_pool
            if pool is None:
                pool = _process_pool = SubtaskPool(threads, name=f"nestpool-subtask-{os.getpid()}")
    return pool


def _forget_process_pool_in_child() -> None:
    # A forked child has none of the parent's threads; start afresh on demand.
    global _process_pool, _process_pool_lock
    _helper_idents.clear()
    _process_pool = None
    _process_pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_process_pool_in_child)
