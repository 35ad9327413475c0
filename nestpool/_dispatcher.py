"""The parent side of the process engine: one manager thread, many workers.

Data flow::

    submitting threads                 nestpool-dispatcher thread           worker processes
    ------------------                 --------------------------           ----------------
    Task(id, payload, future) --inbox (SimpleQueue)--+
                       wakeup byte --self-pipe------>|  wait([wakeup, conn_1..n,
                                                     |        sentinel_1..n],
                                                     |       timeout=next deadline)
                                                     |
                   TaskTable: pending deque ---------+--CALL--> own pipe --> worker 1 .. n
                   TaskTable: tasks, chunks <--------+--ACK/RESULT-- own pipe
                   WorkerTable <---------------------+-- sentinel fires: worker died
                   Deadlines: heap ------------------+-- timeout: kill, replace

- ``submit()`` only records a ``Task`` in the inbox (the caller pickled it)
  and wakes the dispatcher; it never touches processes. The dispatcher thread
  alone mutates the tables (one owner per state).
- Each worker has its own duplex pipe, so a worker that dies mid-write can only
  break its own channel, never another's (the reason ``ProcessPoolExecutor``
  breaks the whole pool on one death).
- A worker marks each task it starts (its id in a shared array, read after a
  death; an ``Ack`` message too when the task has a timeout, which starts
  then), so on its death exactly the tasks it was running fail
  (``WorkerDiedError``); tasks it had received but not started are sent to
  another worker, and a replacement is started.
- A chunk (many items of one ``map``) records per-item outcomes; when its worker
  dies, the item that was running (read from the worker's shared array of
  marks) fails, finished items keep their values, and the rest run again
  elsewhere.
- Timeouts use the same path: the worker is killed and replaced.
- So does ``stop`` (``nestpool.stop``): the worker is killed and replaced,
  and its other tasks run again elsewhere rather than fail.
- Only an initializer that fails (or workers that keep dying before they are
  ready) breaks the pool: it stops starting workers and fails pending and new
  work with ``InitializerError``. A worker SIGKILLed before it said
  ``Booted`` was killed from outside while starting: that does not count.

The state lives in three tables, each a class of its own: ``TaskTable``
(``_tasks``: tasks, chunks, the pending queue, every future's outcome),
``WorkerTable`` (``_workers``: processes, pipes, sentinels, start-up deaths)
and ``Deadlines`` (``_timeouts``). ``Dispatcher`` owns the inbox, the thread
and the loop, and composes them: each step of ``_run`` asks the tables
questions and carries out their decisions. It must never let another thread
touch the tables: other threads only put work in the inbox and wake it.
"""

from __future__ import annotations

import logging
import math
import multiprocessing.util
import os
import queue
import select
import threading
import weakref
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ._errors import InitializerError
from ._futures import cancel_notified, start_unless_cancelled
from ._protocol import Ack, ArgsFailed, Booted, InitFailed, Message, Ready, Result
from ._records import Task, WorkerHandle, new_task_id
from ._tasks import TaskTable
from ._timeouts import Deadlines
from ._waiting import POLL_SECONDS, OneShotEvent, wait_event
from ._wording import (
    TERMINATED,
    copy_initializer_error,
    death_error,
    dispatcher_crashed,
    pool_closed,
    stop_reason,
)
from ._workers import WorkerTable, close_in_fork_child

if TYPE_CHECKING:
    from ._options import PoolOptions

__all__ = ["Dispatcher", "join_all_dispatchers", "new_task_id"]

logger = logging.getLogger("nestpool")


class _Wakeup:
    """A self-pipe: other threads write a byte to end the dispatcher's wait.

    A byte is written only while the dispatcher sleeps, or is about to, and
    once per sleep: ``sleeping`` and ``turn`` are set by the dispatcher thread
    alone, around its ``poll`` (``sleep_begins``; ``turn`` counts its sleeps).
    Before it blocks it sets ``sleeping`` and then looks at its inbox once
    more (``Dispatcher._wait_and_collect``); a submitter puts its work in the
    inbox and then reads ``sleeping``. Whichever order the two threads take,
    the work is seen: either the submitter finds ``sleeping`` set and a byte
    is written in this sleep, or the dispatcher finds the work in its inbox
    and does not block. While the dispatcher is busy a submit costs no write
    at all, nor does a second submit before the woken dispatcher runs (a map
    that submits its chunks one after the other: each write took the
    submitter about 10 us and gave the dispatcher a turn of its own).

    ``woken_turn`` records the sleep a byte was written for, after the write,
    from the turn read before it: a submitter held up between the two may
    record a turn already over (harmless: the next sleep has a new turn), never
    one with no byte in it; a Ctrl-C between them records nothing, so the
    next ``wake()`` writes. No lock is shared: a lock held across the write
    made the woken dispatcher wait for the submitter's thread (and that thread
    for the GIL) on every wake-up. A byte written just as the dispatcher wakes
    for another reason is left behind: harmless, one extra turn.
    """

    def __init__(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)
        #: True while the dispatcher is (about to be) blocked in its poll
        self.sleeping = False
        #: how many times the dispatcher went to sleep
        self.turn = 0
        #: the turn a byte was last written for
        self.woken_turn = -1

    def sleep_begins(self) -> None:
        """The dispatcher thread is about to look at its inbox, then block."""
        self.turn += 1
        self.sleeping = True

    def wake(self) -> None:
        if self.sleeping:
            turn = self.turn
            if turn == self.woken_turn:
                return  # a byte for this sleep is written already
            try:
                os.write(self.writer, b"\0")
            except OSError:  # closed at the very end of shutdown (or full)
                return
            self.woken_turn = turn

    def clear(self) -> None:
        """Drain the pipe (the dispatcher thread, when the pipe was readable)."""
        try:
            while os.read(self.reader, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Close both ends, once: a forked child runs this too (registered
        with ``register_after_fork``), and must not close what the same fd
        numbers have become since (its own pipe, its sentinel). A ``wake()``
        racing the parent's close fails on the closed fd, which it ignores."""
        fds = (self.reader, self.writer)
        self.reader = self.writer = -1
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


class _PollSet:
    """What ``multiprocessing.connection.wait`` does, with one ``select.poll``
    kept while the watched pipes and sentinels stay the same: ``wait`` makes
    a selector and registers every fd on each call, several microseconds per
    turn of the loop, and a task's round trip takes about two turns."""

    def __init__(self) -> None:
        self._watched: list[Any] = []
        self._poll = select.poll()
        self._by_fd: dict[int, Any] = {}

    def wait(self, watched: list[Any], timeout: float | None) -> list[Any]:
        """The objects of ``watched`` (fds, or objects with ``fileno()``)
        that are ready to read or have ended, after at most ``timeout``."""
        if watched != self._watched:
            self._poll = select.poll()
            self._by_fd = {}
            for obj in watched:
                fd = obj if isinstance(obj, int) else obj.fileno()
                self._poll.register(fd, select.POLLIN)
                self._by_fd[fd] = obj
            self._watched = watched
        # As selectors.PollSelector: milliseconds, rounded up.
        ms = None if timeout is None else max(0, math.ceil(timeout * 1e3))
        by_fd = self._by_fd
        return [by_fd[fd] for fd, _ in self._poll.poll(ms)]


#: every dispatcher whose thread may still run, joined at interpreter exit
_live: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


# A forked child owns none of the parent's dispatchers (their threads do not
# exist there): it must not wait for them at exit.
os.register_at_fork(after_in_child=_live.clear)


def join_all_dispatchers() -> None:
    """Wait for every dispatcher's work to end (at interpreter exit, as the
    standard library does for executors shut down with ``wait=False``)."""
    for dispatcher in list(_live):
        dispatcher.join()


class Dispatcher:
    """Owns the worker processes and the task table of one ``Pool``."""

    def __init__(self, options: PoolOptions, *, name: str, cores: int | None = None) -> None:
        self.broken: InitializerError | None = None
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wakeup = _Wakeup()
        self._poll_set = _PollSet()
        multiprocessing.util.register_after_fork(self._wakeup, close_in_fork_child)
        self._tasks = TaskTable()
        self._workers = WorkerTable(options, name=name, cores=cores)
        self._deadlines = Deadlines(self._tasks)
        self._shutting_down = False
        self._terminating = False
        self._closing_lock = threading.Lock()
        self._closed = False
        #: set as the dispatcher thread's very last step (every worker is gone)
        self._ended = OneShotEvent()
        self._thread = threading.Thread(target=self._run, name=f"{name}-dispatcher", daemon=True)
        self._thread.start()
        _live.add(self)

    # ------------------------------------------------------------------ API
    # Called from any thread: they only enqueue and wake the dispatcher.

    @property
    def item_seconds(self) -> dict[str, float]:
        """Seconds per item, by task name (a moving average), for auto chunksize."""
        return self._tasks.item_seconds

    def submit(self, task: Task) -> None:
        """Hand a task to the dispatcher (its future is resolved later)."""
        broken = self.broken
        if broken is not None:
            task.future.set_running_or_notify_cancel()
            task.future.set_exception(copy_initializer_error(broken))
            return
        with self._closing_lock:
            if not self._closed:
                self._inbox.put(("task", task))
                self._wakeup.wake()
                return
        # A caller that read the route just before the pool shut down.
        if task.future.set_running_or_notify_cancel():
            task.future.set_exception(pool_closed())

    def shutdown(self, *, cancel_futures: bool) -> None:
        """Finish the work in hand (cancelling what has not started if asked),
        then stop the workers and the dispatcher thread.

        With ``cancel_futures`` it returns once the tasks that had not started
        are cancelled, as ``ThreadPoolExecutor.shutdown`` does (even with
        ``wait=False``): a caller may count on ``cancelled()`` right after.
        """
        cancelled = OneShotEvent() if cancel_futures else None
        self._inbox.put(("shutdown", cancelled))
        self._wakeup.wake()
        if cancelled is not None:
            # In slices: the dispatcher may have ended already (then nothing
            # is pending), and Ctrl-C must get through (POLL_SECONDS).
            while not cancelled.is_set() and not self._ended.is_set():
                cancelled.wait(POLL_SECONDS)

    def stop(self, future: Future[Any]) -> None:
        """Its user stopped ``future`` (already cancelled, by ``_stop``): kill
        the worker running its task, replace it, and run that worker's other
        tasks again elsewhere. Nothing to do once the pool has closed."""
        with self._closing_lock:
            if not self._closed:
                self._inbox.put(("stop", future))
                self._wakeup.wake()

    def terminate(self) -> None:
        """Stop now: cancel what has not started, kill the workers, fail what ran."""
        self._inbox.put(("terminate", None))
        self._wakeup.wake()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the dispatcher thread (and so every worker) to end.

        Not ``Thread.join()``: a Ctrl-C that interrupts it on Python 3.11 marks
        the running thread as stopped (bpo-45274's fix), after which a second
        join returns at once, before the workers are killed; and the wait goes
        in slices, so that Ctrl-C gets through promptly (``POLL_SECONDS``).
        """
        if threading.current_thread() is not self._thread:
            wait_event(self._ended, timeout)

    def is_alive(self) -> bool:
        """True while the dispatcher thread runs."""
        return not self._ended.is_set()

    def worker_pids(self) -> list[int]:
        """Pids of the live workers (read from another thread: a snapshot)."""
        return [worker.pid for worker in self._workers.handles()]

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            while True:
                self._take_inbox()
                self._maintain_workers()
                self._dispatch_ready()
                if self._finished():
                    break
                self._wait_and_collect()
                self._expire_timeouts()
        except BaseException as exc:  # pragma: no cover - a bug in nestpool
            logger.critical("nestpool dispatcher crashed", exc_info=True)
            self._tasks.fail_all(dispatcher_crashed(exc))
            self._workers.stop_all()
        finally:
            with self._closing_lock:
                self._closed = True
            self._workers.close_all()
            self._wakeup.close()
            # Tasks that slipped in while the loop was ending: fail, never hang.
            while True:
                try:
                    kind, value = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if kind == "task" and start_unless_cancelled(value.future):
                    value.future.set_exception(pool_closed())
            self._ended.set()

    def _take_inbox(self) -> None:
        while True:
            try:
                kind, value = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "task":
                self._add_task(value)
            elif kind == "shutdown":
                self._shutting_down = True
                if value is not None:
                    self._tasks.cancel_pending()
                    value.set()
            elif kind == "stop":
                self._stop(value)
            elif kind == "terminate":
                self._shutting_down = self._terminating = True
                self._tasks.cancel_pending()
                self._workers.stop_all(TERMINATED)

    def _stop(self, future: Future[Any]) -> None:
        for task, worker in self._tasks.stop(future):
            if worker is not None:
                # Even a task sent but not acknowledged: it is in the worker's
                # queue and would start.
                self._workers.stop(worker, stop_reason(task), rerun=True)

    def _add_task(self, task: Task) -> None:
        if self.broken is not None:
            self._tasks.fail(task, copy_initializer_error(self.broken))
        elif self._terminating:
            cancel_notified(task.future)
        else:
            self._tasks.add(task)

    def _finished(self) -> bool:
        """True once shutting down with no task left and every worker gone
        (idle ones are asked to leave)."""
        if not self._shutting_down or self._tasks:
            return False
        return not self._workers.retire_all()

    def _maintain_workers(self) -> None:
        self._workers.retire_spent()
        if self.broken is not None or self._terminating:
            return
        if self._shutting_down and not self._tasks.pending:
            return
        if not self._tasks and not self._workers.handles():
            return  # started lazily, on the first task
        for _ in range(self._workers.missing()):
            try:
                self._workers.start()
            except InitializerError as error:
                self._break(error)
                return

    def _dispatch_ready(self) -> None:
        if not self._tasks.pending:
            return
        open_workers = self._workers.open_workers()
        while open_workers:
            task = self._tasks.next_to_send()
            if task is None:
                return
            worker = self._workers.pick(open_workers)
            self._workers.send_call(worker, task)
            if self._workers.is_full(worker):
                open_workers.remove(worker)

    def _wait_and_collect(self) -> None:
        wakeup = self._wakeup
        watched: list[Any] = [wakeup.reader, *self._workers.watched()]
        # From here on a submit writes a byte; work put in the inbox before
        # this is seen here instead (see _Wakeup).
        wakeup.sleep_begins()
        timeout = 0.0 if not self._inbox.empty() else self._deadlines.wait_seconds()
        try:
            readable = self._poll_set.wait(watched, timeout)
        finally:
            wakeup.sleeping = False
        for ready in readable:
            if ready == wakeup.reader:
                wakeup.clear()
                continue
            worker = self._workers.by_conn(ready)
            if worker is not None:
                self._collect_results(worker, readable=True)
                continue
            worker = self._workers.by_sentinel(ready)
            if worker is not None:
                self._reap_dead_worker(worker)

    def _expire_timeouts(self) -> None:
        for late in self._deadlines.expired():
            task = late.task
            if task.retries:
                # Taken off its worker before the worker is stopped: it runs
                # again elsewhere (or fails, its tries spent), as after a death.
                self._tasks.lose(task, late.error, late.worker.marks[task.runner], rerun=True)
            else:
                self._tasks.fail(task, late.error)
            self._workers.stop(late.worker, late.reason)

    # ------------------------------------------------------------ messages

    def _collect_results(self, worker: WorkerHandle, *, readable: bool = False) -> None:
        for message in self._workers.messages(worker, readable=readable):
            self._handle_message(worker, message)

    def _handle_message(self, worker: WorkerHandle, message: Message) -> None:
        if isinstance(message, Result):
            self._take_result(message)
        elif isinstance(message, Ack):
            task = self._tasks.start(message.task_id, message.runner)
            if task is not None:
                self._deadlines.start(task)
        elif isinstance(message, Booted):
            self._workers.booted(worker)
        elif isinstance(message, Ready):
            self._workers.ready(worker)
        elif isinstance(message, ArgsFailed):
            task = self._tasks.get(message.task_id)
            if task is not None:
                self._tasks.take_args_failure(task, message.error)
        elif isinstance(message, InitFailed):
            self._break(message.error)

    def _take_result(self, result: Result) -> None:
        task = self._tasks.get(result.task_id)
        if task is None:
            return  # already failed by a timeout; a late result
        if result.final and self._tasks.pending:
            # The worker's runner is free: send it its next task before
            # unpickling these values, so that its work overlaps ours instead
            # of waiting a round trip (tiny chunks kept both workers idle a
            # third of the time).
            task.leave_worker()
            self._dispatch_ready()
        self._tasks.take_result(task, result)

    # ------------------------------------------------------------ endings

    def _reap_dead_worker(self, worker: WorkerHandle) -> None:
        # Messages the worker wrote before it died are still in the pipe:
        # read them first, so finished work keeps its result.
        self._collect_results(worker)
        # The calls it started without an ``Ack`` (no timeout): RUNNING now,
        # as if the Ack had come, so that they are not run again elsewhere.
        for task_id, runner in self._workers.started(worker):
            if task_id in worker.tasks:
                self._tasks.start(task_id, runner)
        terminating = self._terminating
        death = self._workers.bury(worker, replace=not terminating and self.broken is None)
        for task in death.tasks:
            if worker.rerun_held and not terminating:
                self._tasks.rerun(task)
                continue
            error = death_error(
                task, worker.pid, death.exitcode, worker.kill_reason, death.running, terminating
            )
            self._tasks.lose(task, error, worker.marks[task.runner], rerun=not terminating)
        if death.broke is not None:
            self._break(death.broke)

    def _break(self, error: InitializerError) -> None:
        """The initializer failed: fail all work, stop starting workers."""
        if self.broken is not None:
            return
        self.broken = error
        logger.error("nestpool: %s", error)
        self._tasks.fail_all(error)
        self._workers.stop_all()
