"""The thread pool that runs ``@thread_subtask`` calls, and this process's own one.

What it owns: ``SubtaskPool``, a persistent pool of threads that run the
claimable futures of ``_futures`` (a thread that waits on a subtask nobody
started runs it itself, so waiting inside the pool never deadlocks), and
``this_process_subtask_pool()``, the one pool a worker process keeps for its
whole life, made on first use and shared by the local engine and the Dask
backend. A ``Pool`` in the parent makes its own ``SubtaskPool``.

It must never import parent-side modules (a worker imports it), and never
read or write a future's private fields: claiming and recording an outcome is
``SubtaskFuture``'s business.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import Any

from ._errors import PoolClosedError
from ._futures import SubtaskFuture, become_helper, cancel_notified, stop_helping
from ._subtask_loop import on_loop_thread
from ._typing import R
from ._waiting import POLL_SECONDS, wait_for

__all__ = ["SubtaskPool", "default_threads", "this_process_subtask_pool"]

logger = logging.getLogger("nestpool")


def default_threads() -> int:
    """``ThreadPoolExecutor``'s default size: min(32, cpu_count + 4), counting
    the CPUs as it does (``os.process_cpu_count()`` from Python 3.13)."""
    counter = getattr(os, "process_cpu_count", os.cpu_count)
    return min(32, (counter() or 1) + 4)


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
        # re-entrant: Pool.__del__ may shut this down in a thread that holds it
        self._lock = threading.RLock()
        #: notified (under _lock) as each thread ends; _live counts the others
        self._ended = threading.Condition(self._lock)
        self._live = 0
        self._shutdown = False
        #: futures of work run elsewhere for this pool (async subtasks on the
        #: process's event loop) that shutdown(wait=True) waits for too; held
        #: until the shutdown's end, so that those its last thread subtasks
        #: start are waited for as well
        self._held: set[Future[Any]] = set()
        self._held_closed = False

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

    def hold(self, future: Future[Any]) -> None:
        """Count ``future`` (work run outside the pool's threads, such as an
        async subtask on the process's event loop) as this pool's work: a
        shutdown that waits waits for it too. A no-op once shut down."""
        if self._held_closed:
            return
        held = self._held
        held.add(future)
        future.add_done_callback(held.discard)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; optionally cancel what has not started; join threads.

        With ``wait``, the work it holds (``hold``) is waited for first, while
        its threads still take the thread subtasks that work may call, and
        again once the threads have ended (what their last calls started).
        """
        if wait and self._held:
            _wait_all(self._held)
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
            _wait_all(self._held)
        self._held_closed = True


def _wait_all(held: set[Future[Any]]) -> None:
    if on_loop_thread():
        return  # the loop's work cannot end while its own thread waits here
    # A copy per turn: each done future leaves the set from its callback, and
    # the work waited for may hold more.
    while held:
        wait_for(functools.partial(_all_done, list(held)))


def _all_done(futures: list[Future[Any]], timeout: float | None) -> bool:
    return not futures_wait(futures, timeout).not_done


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
            if item.pending_work():  # else its waiter ran it already
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


_this_process_pool: SubtaskPool | None = None
_this_process_pool_lock = threading.Lock()


def this_process_subtask_pool(threads: int | None) -> SubtaskPool:
    """This process's persistent subtask pool, created on first use.

    A worker process (local engine or Dask) keeps one for its whole life; every
    process task that runs there shares it.
    """
    global _this_process_pool
    pool = _this_process_pool
    if pool is None:
        with _this_process_pool_lock:
            pool = _this_process_pool
            if pool is None:
                pool = _this_process_pool = SubtaskPool(
                    threads, name=f"nestpool-subtask-{os.getpid()}"
                )
    return pool


def _forget_this_process_pool_in_child() -> None:
    # A forked child has none of the parent's threads; start afresh on demand.
    global _this_process_pool, _this_process_pool_lock
    _this_process_pool = None
    _this_process_pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_this_process_pool_in_child)
