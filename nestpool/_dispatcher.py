"""The parent side of the process engine: one manager thread, many workers.

Data flow::

    submitting threads                 nestpool-dispatcher thread           worker processes
    ------------------                 --------------------------           ----------------
    Task(id, payload, future) --inbox (SimpleQueue)--+
                       wakeup byte --self-pipe------>|  wait([wakeup, conn_1..n,
                                                     |        sentinel_1..n],
                                                     |       timeout=next deadline)
                                                     |
                                   pending deque ----+--CALL--> own pipe --> worker 1 .. n
                                   task table <------+--ACK/RESULT-- own pipe
                                   worker table <----+-- sentinel fires: worker died
                                   deadline heap ----+-- timeout: kill, replace

- ``submit()`` only pickles, records a ``Task`` in the inbox and wakes the
  dispatcher; it never touches processes. The dispatcher thread alone mutates
  the task and worker tables (one owner per state).
- Each worker has its own duplex pipe, so a worker that dies mid-write can only
  break its own channel, never another's (the reason ``ProcessPoolExecutor``
  breaks the whole pool on one death).
- A worker acknowledges each task it starts, so on its death exactly the tasks
  it was running fail (``WorkerDiedError``); tasks it had received but not
  started are sent to another worker, and a replacement is started.
- A chunk (many items of one ``map``) records per-item outcomes; when its worker
  dies, the item that was running (read from the worker's shared slot array)
  fails, finished items keep their values, and the rest run again elsewhere.
- Timeouts use the same path: the worker is killed and replaced.
- Only an initializer that fails (or workers that keep dying before they are
  ready) breaks the pool: it stops starting workers and fails pending and new
  work with ``InitializerError``. A worker SIGKILLed before it said
  ``Booted`` was killed from outside while starting: that does not count.
- A worker being stopped (a timeout) is sent no more work; a task it had
  received but not acknowledged runs elsewhere.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import multiprocessing.util
import os
import queue
import threading
import time
import weakref
from collections import deque
from concurrent.futures import CancelledError, Future
from typing import Any, cast

from ._errors import (
    InitializerError,
    NestpoolError,
    PoolClosedError,
    TaskTimeoutError,
    WorkerDiedError,
    describe_exit,
    signal_name,
)
from ._futures import cancel_notified, start_unless_cancelled
from ._protocol import (
    SHAPE_ARGS,
    SHAPE_SINGLE,
    SHAPE_UNARY,
    Ack,
    ArgsFailed,
    Booted,
    Call,
    Exit,
    InitFailed,
    Ready,
    Result,
    pack,
    unpack,
)
from ._records import Outcome, Task, TaskState, WorkerHandle, WorkerState
from ._serialize import ChunkValues, dumps, loads, pickling_error
from ._waiting import POLL_SECONDS, OneShotEvent, wait_event
from ._worker import FUNCTION_CACHE, InitCall, WorkerConfig, worker_main

__all__ = ["Dispatcher", "join_all_dispatchers", "new_task_id"]

logger = logging.getLogger("nestpool")

#: Workers that die before they are ready this many times in a row break the
#: pool, as a failing initializer does (no endless respawn loop).
MAX_STARTUP_DEATHS = 3

#: The longest single wait of the dispatcher, in seconds: it wakes up at least
#: this often, so a far deadline never overflows a wait.
MAX_WAIT = 3600.0


class _Wakeup:
    """A self-pipe: other threads write a byte to end the dispatcher's wait.

    ``pending`` saves a write per submit while a byte is already waiting. It
    must never be True while the pipe is empty, or every later ``wake()``
    skips its write and the dispatcher sleeps through new work (a lost
    wake-up, and Ctrl-C would wait for ever). So ``wake()`` writes *before* it sets
    the flag (a KeyboardInterrupt between the two leaves an extra byte, which
    is harmless), and ``clear()`` drains *before* it resets the flag, both
    under one lock: otherwise ``clear()`` could reset the flag, then drain a
    byte that a ``wake()`` wrote after the reset, and leave the flag set over
    an empty pipe. Submitters put their work in the inbox before ``wake()``,
    and the dispatcher reads the inbox after ``clear()``, so nothing is missed.
    """

    def __init__(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)
        self.pending = False
        self._lock = threading.Lock()

    def wake(self) -> None:
        if self.pending:
            # A byte is waiting (or clear() is draining, and the dispatcher
            # reads the inbox after it): no write needed.
            return
        with self._lock:
            if not self.pending:
                try:
                    os.write(self.writer, b"\0")
                except OSError:  # closed at the very end of shutdown
                    return
                self.pending = True

    def clear(self) -> None:
        with self._lock:
            try:
                while os.read(self.reader, 4096):
                    pass
            except (BlockingIOError, OSError):
                pass
            self.pending = False

    def close(self) -> None:
        """Close both ends, once: a forked child runs this too (registered
        with ``register_after_fork``), and must not close what the same fd
        numbers have become since (its own pipe, its sentinel). No lock: in a
        forked child another thread of the parent may have held it at the
        fork, for ever; a ``wake()`` racing the parent's close fails on the
        closed fd, which it ignores."""
        fds = (self.reader, self.writer)
        self.reader = self.writer = -1
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


def _close_in_fork_child(obj: Any) -> None:
    # A worker forked later must not hold another worker's parent end: the
    # parent's death would then never reach that worker as end-of-channel.
    obj.close()


_task_ids = itertools.count(1)
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


def new_task_id() -> int:
    """A process-wide unique task id (``next`` on a count is atomic)."""
    return next(_task_ids)


class Dispatcher:
    """Owns the worker processes and the task table of one ``Pool``."""

    def __init__(
        self,
        *,
        processes: int,
        threads: int | None,
        tasks_per_process: int,
        context: multiprocessing.context.BaseContext,
        initializer: InitCall | None,
        max_tasks_per_child: int | None,
        name: str,
        cores: int | None = None,
    ) -> None:
        self.processes = processes
        self.threads = threads
        self.tasks_per_process = tasks_per_process
        self.context = context
        self.initializer = initializer
        self.max_tasks_per_child = max_tasks_per_child
        self.name = name
        #: seconds per item, by task name (moving average), for auto chunksize.
        self.item_seconds: dict[str, float] = {}
        #: every worker ever started, by pid (for tests and diagnostics).
        self.started_pids: list[int] = []
        self.broken: InitializerError | None = None
        #: The workers' shared semaphore of ``cores`` compute slots, when more
        #: process tasks can run at once than there are cores (see
        #: ``_compute_slots``, "compute slots"); else None.
        self.compute_slots: Any = None
        if cores is not None and processes * tasks_per_process > cores:
            self.compute_slots = context.Semaphore(cores)

        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wakeup = _Wakeup()
        multiprocessing.util.register_after_fork(self._wakeup, _close_in_fork_child)
        self._pending: deque[Task] = deque()
        self._tasks: dict[int, Task] = {}
        self._workers: list[WorkerHandle] = []
        self._by_conn: dict[Any, WorkerHandle] = {}
        self._by_sentinel: dict[int, WorkerHandle] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._worker_counter = itertools.count()
        self._startup_deaths = 0
        #: pids of workers that died unexpectedly and whose replacement is due
        #: (only for the log line that says which worker replaces which).
        self._replacing: deque[int] = deque()
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

    def submit(self, task: Task) -> None:
        """Hand a task to the dispatcher (its future is resolved later)."""
        broken = self.broken
        if broken is not None:
            task.future.set_running_or_notify_cancel()
            task.future.set_exception(_copy_initializer_error(broken))
            return
        with self._closing_lock:
            if not self._closed:
                self._inbox.put(("task", task))
                self._wakeup.wake()
                return
        # A caller that read the route just before the pool shut down.
        if task.future.set_running_or_notify_cancel():
            task.future.set_exception(PoolClosedError("cannot schedule new futures after shutdown"))

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
        return [w.pid for w in list(self._workers) if w.state is not WorkerState.DEAD]

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
            if isinstance(exc, RuntimeError) and "bootstrapping phase" in str(exc):
                # A worker being started ran the main module's unguarded code.
                error = NestpoolError(
                    "nestpool could not start a worker process while the main module "
                    "was being imported by another one: guard the program's entry point "
                    "with `if __name__ == '__main__':`."
                )
            else:
                error = NestpoolError(
                    f"nestpool's dispatcher failed: {exc!r}. This should never happen; "
                    "please file a bug with the traceback logged on the 'nestpool' logger."
                )
            self._fail_everything(error)
            self._kill_all()
        finally:
            with self._closing_lock:
                self._closed = True
            self._close_all()
            # Tasks that slipped in while the loop was ending: fail, never hang.
            while True:
                try:
                    kind, value = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if kind == "task" and _ensure_running(value.future):
                    value.future.set_exception(
                        PoolClosedError("cannot schedule new futures after shutdown")
                    )
            self._ended.set()

    def _take_inbox(self) -> None:
        self._wakeup.clear()
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
                    self._cancel_pending()
                    value.set()
            elif kind == "terminate":
                self._shutting_down = self._terminating = True
                self._cancel_pending()
                self._kill_all(reason="the pool was terminated (Ctrl-C or an error)")

    def _add_task(self, task: Task) -> None:
        if self.broken is not None:
            self._resolve_error(task, _copy_initializer_error(self.broken))
            return
        if self._terminating:
            cancel_notified(task.future)
            return
        self._tasks[task.id] = task
        self._pending.append(task)

    def _cancel_pending(self) -> None:
        while self._pending:
            task = self._pending.popleft()
            if cancel_notified(task.future):
                task.move(TaskState.DONE)
                self._tasks.pop(task.id, None)
            else:  # pragma: no cover - pending futures are always cancellable
                self._resolve_error(task, NestpoolError("task was not started: pool shut down"))

    def _finished(self) -> bool:
        if not self._shutting_down or self._tasks:
            return False
        live = [w for w in self._workers if w.state is not WorkerState.DEAD]
        for worker in live:
            if worker.state is not WorkerState.RETIRING:
                self._retire(worker)
        return not live

    # ---------------------------------------------------------- workers

    def _maintain_workers(self) -> None:
        if self.broken is not None or self._terminating:
            return
        if self._shutting_down and not self._pending:
            return
        if not self._tasks and not self._workers:
            return  # started lazily, on the first task
        active = sum(
            1 for w in self._workers if w.state in (WorkerState.STARTING, WorkerState.READY)
        )
        for _ in range(self.processes - active):
            self._start_worker()

    def _start_worker(self) -> None:
        index = next(self._worker_counter)
        parent_conn, child_conn = self.context.Pipe(duplex=True)
        # Per runner: the index of the item it runs; then whether the worker
        # holds a compute slot (so that its death gives the slot back).
        marks = self.context.RawArray("q", self.tasks_per_process + 1)
        config = WorkerConfig(index, self.threads, self.tasks_per_process)
        call = self.initializer
        init = () if call is None else (call.initializer, call.initargs)
        # typeshed's BaseContext has no Process (each concrete context has its own)
        process = cast(
            "multiprocessing.process.BaseProcess",
            self.context.Process(  # type: ignore[attr-defined]
                target=worker_main,
                args=(child_conn, marks, config, self.compute_slots, *init),
                name=f"{self.name}-worker-{index}",
            ),
        )
        # Registered before the start: a forked worker must close its copy of
        # its own parent end too, or the parent's death never reaches it as
        # end-of-channel and it is orphaned for good.
        multiprocessing.util.register_after_fork(parent_conn, _close_in_fork_child)
        try:
            process.start()
        except BaseException as exc:
            # Under spawn and forkserver the initializer and its arguments are
            # pickled here, as the process starts (a Queue may only be pickled
            # then): one that cannot be is the initializer's failure.
            child_conn.close()
            parent_conn.close()
            error = InitializerError(
                f"a worker process could not be started: {type(exc).__name__}: {exc} "
                "(the pool's initializer and initargs must be picklable under the "
                f"{self.context.get_start_method()!r} start method; the pool stops "
                "starting workers)"
            )
            error.__cause__ = exc
            self._break(error)
            return
        child_conn.close()
        worker = WorkerHandle(index, process, parent_conn, marks)
        self._workers.append(worker)
        self._by_conn[parent_conn] = worker
        self._by_sentinel[process.sentinel] = worker
        self.started_pids.append(worker.pid)
        if self._replacing:
            logger.info(
                "started worker %s (pid %d) to replace worker pid %d",
                process.name,
                worker.pid,
                self._replacing.popleft(),
            )
        else:
            logger.debug("started worker %s (pid %d)", process.name, worker.pid)

    def _retire(self, worker: WorkerHandle) -> None:
        logger.debug("retiring worker pid %d after %d tasks", worker.pid, worker.sent_count)
        worker.state = WorkerState.RETIRING
        self._send(worker, Exit())

    def _send(self, worker: WorkerHandle, message: Call | Exit) -> bool:
        try:
            worker.conn.send_bytes(pack(message))
        except OSError:
            return False  # it is dying; its sentinel will tell
        return True

    # ---------------------------------------------------------- dispatch

    def _dispatch_ready(self) -> None:
        if not self._pending:
            return
        capacity = self.tasks_per_process
        limit = self.max_tasks_per_child
        open_workers = [
            w
            for w in self._workers
            if w.state is WorkerState.READY
            and w.kill_reason is None  # being stopped (a timeout): never send it more
            and len(w.tasks) < capacity
            and (limit is None or w.sent_count < limit)
        ]
        while self._pending and open_workers:
            # The least busy worker first, so that tasks_per_process > 1 still
            # spreads work over every process before doubling up on one.
            worker = min(open_workers, key=lambda w: len(w.tasks))
            task = self._pending.popleft()
            # The future leaves PENDING here, so a queued call can no longer
            # be cancelled (as in the standard library). A task is sent only
            # to a worker with a free runner, so it starts at once: nothing
            # waits in a worker's pipe, where it could not be cancelled.
            if not _ensure_running(task.future):
                task.move(TaskState.DONE)
                del self._tasks[task.id]
                continue
            self._send_task(worker, task)
            if len(worker.tasks) >= capacity or (limit is not None and worker.sent_count >= limit):
                open_workers.remove(worker)

    def _send_task(self, worker: WorkerHandle, task: Task) -> None:
        task.move(TaskState.SENT)
        task.worker = worker
        worker.tasks[task.id] = task
        worker.sent_count += 1
        shape = SHAPE_SINGLE if task.indices is None else SHAPE_UNARY if task.unary else SHAPE_ARGS
        fn = task.fn_payload
        # The callable's pickle goes only to a worker that does not have it;
        # the worker's reader applies the same rule (``FUNCTION_CACHE``).
        known = worker.functions
        if fn.key in known:
            known.move_to_end(fn.key)
            function: tuple[bytes, bytes | None] = (fn.key, None)
        else:
            known[fn.key] = None
            if len(known) > FUNCTION_CACHE:
                known.popitem(last=False)
            function = (fn.key, bytes(fn))
        self._send(worker, Call(task.id, task.name, function, task.payload, shape))

    # ---------------------------------------------------------- waiting

    def _wait_and_collect(self) -> None:
        timeout = None
        deadlines = self._deadlines
        # Finished tasks leave their deadline behind: drop those on top, so a
        # long timeout (or an infinite one) does not keep them forever.
        while deadlines and not self._deadline_live(*deadlines[0]):
            heapq.heappop(deadlines)
        if deadlines:
            # Capped: poll() and lock waits overflow on huge timeouts (even inf).
            timeout = min(MAX_WAIT, max(0.0, deadlines[0][0] - time.monotonic()))
        watched: list[Any] = [self._wakeup.reader, *self._by_conn, *self._by_sentinel]
        for ready in multiprocessing.connection.wait(watched, timeout):
            worker = self._by_conn.get(ready)
            if worker is not None:
                self._collect_results(worker)
                continue
            worker = self._by_sentinel.get(ready) if isinstance(ready, int) else None
            if worker is not None:
                self._reap_dead_worker(worker)

    def _collect_results(self, worker: WorkerHandle) -> None:
        conn = worker.conn
        try:
            while conn.poll():
                self._handle_message(worker, conn.recv_bytes())
        except (EOFError, OSError):
            # The worker closed its end: it is exiting; its sentinel follows.
            self._by_conn.pop(conn, None)

    def _handle_message(self, worker: WorkerHandle, data: bytes) -> None:
        message = unpack(data)
        if isinstance(message, Result):
            self._take_result(message)
        elif isinstance(message, Ack):
            self._take_ack(message)
        elif isinstance(message, Booted):
            worker.booted = True
        elif isinstance(message, Ready):
            if worker.state is WorkerState.STARTING:
                worker.state = WorkerState.READY
            self._startup_deaths = 0
        elif isinstance(message, ArgsFailed):
            self._take_args_failure(message.task_id, message.error)
        elif isinstance(message, InitFailed):
            self._break(message.error)

    def _take_ack(self, ack: Ack) -> None:
        task = self._tasks.get(ack.task_id)
        if task is not None and task.state is TaskState.SENT:
            task.move(TaskState.RUNNING)
            task.runner = ack.runner
            if task.timeout is not None:
                task.deadline = time.monotonic() + task.timeout
                heapq.heappush(self._deadlines, (task.deadline, task.id))

    def _take_result(self, result: Result) -> None:
        task_id, first, count, final = result.task_id, result.first, result.size, result.final
        blob, plain = result.outcomes, result.plain
        task = self._tasks.get(task_id)
        if task is None or task.state is TaskState.DONE:
            return  # already failed by a timeout; a late result
        if final and self._pending:
            # The worker's runner is free: send it its next task before
            # unpickling these values, so that its work overlaps ours instead
            # of waiting a round trip (tiny chunks kept both workers idle a
            # third of the time).
            self._release(task)
            self._dispatch_ready()
        data: list[Any]
        if isinstance(blob, bytes):
            try:
                data = loads(blob)
            except BaseException as exc:  # whatever user code raised, SystemExit too
                error = pickling_error(task.name, "result (unpickling in the parent)", exc)
                data = [(False, error)] * count
                plain = False
        else:
            # One pickle per item (values of types the parent might fail to
            # rebuild): a bad one fails alone.
            data = [_load_outcome(task.name, item, plain) for item in blob]
            if plain:
                if all(ok for ok, _ in data):
                    data = [value for _, value in data]
                else:
                    plain = False
        if count:
            self._record_speed(task.name, result.busy / count)
        indices = task.indices
        if indices is None:
            self._finish(task)
            if plain:
                task.future.set_result(data[0])
            else:
                ok, value = data[0]
                _resolve(task.future, ok, value)
            return
        values = task.values
        if plain and values is not None and first == len(values) and type(indices) is range:
            # Every item so far a value, in order: the values go to the map as
            # they are (no outcome tuple per item).
            if final:
                self._finish(task)
                if values:
                    values += data
                    data = values
                # (one flush, the usual case for tiny items: one copy, not two)
                task.future.set_result(ChunkValues(data))
            else:
                values += data
            return
        task.materialize()
        outcomes: list[Outcome] = [(True, v) for v in data] if plain else data
        assert task.outcomes is not None
        if type(indices) is range:
            # Not re-run: the positions are the offsets (one slice, no loop per item).
            task.outcomes[first : first + len(outcomes)] = outcomes
        else:
            for offset, outcome in enumerate(outcomes):
                task.outcomes[indices[first + offset]] = outcome
        if final:
            self._finish(task)
            task.future.set_result(task.outcomes)

    def _take_args_failure(self, task_id: int, error: BaseException) -> None:
        task = self._tasks.get(task_id)
        if task is None or task.state is TaskState.DONE:
            return
        task.materialize()
        if task.indices is not None and len(task.indices) > 1 and task.items is not None:
            # One bad item spoils the chunk's pickle: send each item on its own
            # to find it, so the others still run.
            self._release(task)
            for index in task.indices:
                self._requeue_item(task, index)
            self._settle_chunk(task)
            return
        self._resolve_error(task, error)

    def _requeue_item(self, chunk: Task, index: int) -> None:
        assert chunk.items is not None and chunk.outcomes is not None
        outcomes = chunk.outcomes
        call: tuple[Any, dict[str, Any]] = (
            (chunk.items[index],) if chunk.unary else chunk.items[index],
            {},
        )
        try:
            payload = dumps([call])
        except BaseException as exc:  # user code, whatever it raises
            outcomes[index] = (False, pickling_error(chunk.name, "argument", exc))
            return
        single = Task(
            new_task_id(), chunk.name, chunk.fn_payload, payload, Future(), chunk.timeout, None
        )

        def store(future: Future[Any]) -> None:
            # Runs in the dispatcher thread: record the item's outcome in the
            # chunk, and complete the chunk if it was the last one missing.
            if future.cancelled():
                outcomes[index] = (False, CancelledError())
            elif future.exception() is not None:
                outcomes[index] = (False, future.exception())
            else:
                outcomes[index] = (True, future.result())
            self._settle_chunk(chunk)

        single.future.add_done_callback(store)
        self._tasks[single.id] = single
        self._pending.append(single)

    def _settle_chunk(self, chunk: Task) -> None:
        if chunk.state is TaskState.DONE or chunk.outcomes is None:
            return
        if all(outcome is not None for outcome in chunk.outcomes):
            chunk.move(TaskState.DONE)
            self._tasks.pop(chunk.id, None)
            chunk.future.set_result(chunk.outcomes)

    def _record_speed(self, name: str, seconds: float) -> None:
        previous = self.item_seconds.get(name)
        self.item_seconds[name] = seconds if previous is None else 0.7 * previous + 0.3 * seconds

    # ---------------------------------------------------------- endings

    def _release(self, task: Task) -> None:
        """Take a task off its worker; retire the worker if it reached its limit."""
        worker = task.worker
        task.worker = None
        if worker is None:
            return
        worker.tasks.pop(task.id, None)
        if (
            self.max_tasks_per_child is not None
            and worker.sent_count >= self.max_tasks_per_child
            and not worker.tasks
            and worker.state is WorkerState.READY
        ):
            self._retire(worker)

    def _finish(self, task: Task) -> None:
        self._release(task)
        task.move(TaskState.DONE)
        del self._tasks[task.id]

    def _resolve_error(self, task: Task, error: BaseException) -> None:
        task.materialize()
        if task.state is not TaskState.DONE:
            self._release(task)
            task.move(TaskState.DONE)
        self._tasks.pop(task.id, None)
        future = task.future
        if future.done() or not _ensure_running(future):
            return
        if task.indices is not None and task.outcomes is not None:
            # A chunk: each unfinished item gets the error; finished ones stay.
            for index in task.indices:
                if task.outcomes[index] is None:
                    task.outcomes[index] = (False, error)
            future.set_result(task.outcomes)
        else:
            future.set_exception(error)

    def _fail_everything(self, error: BaseException) -> None:
        for task in list(self._tasks.values()):
            self._resolve_error(task, error)
        self._pending.clear()

    def _break(self, error: BaseException) -> None:
        """The initializer failed: fail all work, stop starting workers."""
        if self.broken is not None:
            return
        assert isinstance(error, InitializerError)
        self.broken = error
        logger.error("nestpool: %s", error)
        self._fail_everything(error)
        self._kill_all()

    def _kill_all(self, reason: str | None = None) -> None:
        for worker in self._workers:
            if worker.state is not WorkerState.DEAD:
                worker.kill_reason = reason or worker.kill_reason
                _kill(worker.process)

    def _expire_timeouts(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, task_id = heapq.heappop(self._deadlines)
            if not self._deadline_live(deadline, task_id):
                continue
            task = self._tasks[task_id]
            if task.worker is None:
                continue
            worker = task.worker
            logger.warning(
                "task %r (id %d) ran past its timeout of %ss; stopping worker pid %d",
                task.name,
                task.id,
                task.timeout,
                worker.pid,
            )
            self._resolve_error(
                task,
                TaskTimeoutError(
                    f"task {task.name!r} (id {task.id}) ran past its timeout of "
                    f"{task.timeout}s; its worker (pid {worker.pid}) was stopped and replaced",
                    task_name=task.name,
                    task_id=task.id,
                    timeout=task.timeout,
                ),
            )
            worker.kill_reason = (
                f"it was stopped because task {task.name!r} (id {task.id}) in the same "
                f"worker ran past its timeout of {task.timeout}s"
            )
            _kill(worker.process)

    def _deadline_live(self, deadline: float, task_id: int) -> bool:
        """True if the task is running under this deadline (not finished, and
        not a chunk re-run since under a newer one)."""
        task = self._tasks.get(task_id)
        return task is not None and task.state is TaskState.RUNNING and task.deadline == deadline

    def _reap_dead_worker(self, worker: WorkerHandle) -> None:
        # Messages the worker wrote before it died are still in the pipe:
        # read them first, so finished work keeps its result.
        if worker.conn in self._by_conn:
            self._collect_results(worker)
        self._by_conn.pop(worker.conn, None)
        self._by_sentinel.pop(worker.process.sentinel, None)
        worker.process.join(1.0)
        exitcode = worker.process.exitcode
        if exitcode is not None:
            worker.process.close()  # release its sentinel fd now
        self._give_back_compute_slots(worker)
        was_ready = worker.state is not WorkerState.STARTING
        expected = worker.state is WorkerState.RETIRING and not worker.tasks
        worker.state = WorkerState.DEAD
        self._workers.remove(worker)
        try:
            worker.conn.close()
        except OSError:
            pass
        if not expected:
            logger.warning(
                "nestpool worker pid %d %s%s",
                worker.pid,
                describe_exit(exitcode),
                f" ({worker.kill_reason})" if worker.kill_reason else "",
            )
            if not self._terminating and self.broken is None:
                self._replacing.append(worker.pid)
        else:
            logger.debug("worker pid %d exited (%s)", worker.pid, describe_exit(exitcode))
        running = sum(1 for task in worker.tasks.values() if task.state is TaskState.RUNNING)
        for task in list(worker.tasks.values()):
            self._fail_or_requeue(task, worker, exitcode, running)
        worker.tasks.clear()
        if (
            not was_ready
            and self.broken is None
            and not self._terminating
            and (worker.booted or signal_name(exitcode) != "SIGKILL")
        ):
            # A SIGKILL before the worker's own code ran came from outside (the
            # OOM killer, kill -9) while its interpreter started: it says nothing
            # about the initializer or the main module, so it must not count
            # towards breaking the pool (workers killed at random while they
            # start would otherwise break a healthy pool).
            self._startup_deaths += 1
            if self._startup_deaths >= MAX_STARTUP_DEATHS:
                self._break(self._startup_failure(worker, exitcode))

    def _give_back_compute_slots(self, worker: WorkerHandle) -> None:
        """A dead worker held a compute slot: release it, so that a death (a
        timeout's kill among them) costs the pool no slot."""
        flag = self.tasks_per_process
        if self.compute_slots is not None and worker.marks[flag]:
            worker.marks[flag] = 0
            self.compute_slots.release()

    def _startup_failure(self, worker: WorkerHandle, exitcode: int | None) -> InitializerError:
        if worker.booted and self.initializer is not None:
            where = "in the pool's initializer"
            hint = "Check the initializer (run it once in the parent to see it fail)."
        else:
            where = "while starting"
            hint = (
                "Check that the main module can be imported by the workers "
                "(guard the entry point with `if __name__ == '__main__':`)."
            )
        return InitializerError(
            f"{MAX_STARTUP_DEATHS} worker processes in a row died {where}, before they "
            f"were ready (the last {describe_exit(exitcode)}); the pool stops starting "
            f"workers. {hint}"
        )

    def _fail_or_requeue(
        self, task: Task, worker: WorkerHandle, exitcode: int | None, running: int = 1
    ) -> None:
        task.materialize()
        task.worker = None
        if task.state is TaskState.SENT and not self._terminating:
            # It never started: run it on another worker.
            task.move(TaskState.PENDING)
            self._pending.appendleft(task)
            return
        error = self._death_error(task, worker, exitcode, running)
        if task.indices is not None and task.items is not None and not self._terminating:
            assert task.outcomes is not None
            position: int = min(max(worker.marks[task.runner], 0), len(task.indices) - 1)
            current = task.indices[position]
            # The slot still names the item reported last if the worker died
            # between sending its result and marking the next one: that item
            # keeps its value, and the next one had not started.
            if task.outcomes[current] is None:
                task.outcomes[current] = (False, error)
            rest = [i for i in task.indices if task.outcomes[i] is None]
            if rest:
                try:
                    payload = dumps([task.items[i] for i in rest])
                except BaseException as exc:  # user code, whatever it raises
                    self._resolve_error(task, pickling_error(task.name, "argument", exc))
                    return
                task.indices = rest
                task.payload = payload
                task.move(TaskState.PENDING)
                self._pending.appendleft(task)
                return
            task.move(TaskState.DONE)
            self._tasks.pop(task.id, None)
            task.future.set_result(task.outcomes)
            return
        self._resolve_error(task, error)

    def _death_error(
        self, task: Task, worker: WorkerHandle, exitcode: int | None, running: int = 1
    ) -> WorkerDiedError:
        reason = worker.kill_reason or _death_hint(exitcode)
        if self._terminating:
            others = ""
        elif running > 1:
            # tasks_per_process > 1: the siblings went down with it; say so.
            plural = "s" if running > 2 else ""
            others = (
                f" The {running - 1} other task{plural} running in that worker failed "
                "with it; tasks in other workers were not affected."
            )
        elif worker.kill_reason is not None:
            # Stopped for another task's timeout: that one was affected too.
            others = " Tasks in other workers were not affected."
        else:
            others = " Other tasks were not affected."
        return WorkerDiedError(
            f"task {task.name!r} (id {task.id}) lost its worker: pid {worker.pid} "
            f"{describe_exit(exitcode)}; {reason}.{others}",
            task_name=task.name,
            task_id=task.id,
            pid=worker.pid,
            exitcode=exitcode,
        )

    def _close_all(self) -> None:
        for worker in self._workers:
            _kill(worker.process)
            worker.process.join(5)
            try:
                worker.conn.close()
            except OSError:
                pass
        self._workers.clear()
        self._by_conn.clear()
        self._by_sentinel.clear()
        self._wakeup.close()


def _death_hint(exitcode: int | None) -> str:
    name = signal_name(exitcode)
    if name == "SIGKILL":
        return "often the out-of-memory killer (or kill -9)"
    if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"):
        return "a crash in native code (an extension module, ctypes)"
    if name is not None:
        return "it was sent that signal"
    return "the task (or a library it called) ended the process, e.g. with os._exit()"


def _kill(process: Any) -> None:
    try:
        if process.exitcode is None:
            process.kill()
    except (OSError, ValueError, AttributeError):
        pass


def _copy_initializer_error(error: InitializerError) -> InitializerError:
    copy = InitializerError(str(error), traceback_text=error.traceback_text)
    copy.__cause__ = error.__cause__
    return copy


def _load_outcome(name: str, data: bytes, plain: bool) -> Outcome:
    """One item's outcome from its own pickle (of its bare value if ``plain``)."""
    try:
        loaded = loads(data)
    except BaseException as exc:  # whatever user code raised, SystemExit too
        return False, pickling_error(name, "result (unpickling in the parent)", exc)
    if plain:
        return True, loaded
    outcome: Outcome = loaded
    return outcome


def _resolve(future: Future[Any], ok: bool, value: Any) -> None:
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _ensure_running(future: Future[Any]) -> bool:
    """Move a future to RUNNING if it is not yet; False if it was cancelled
    (or is done)."""
    return start_unless_cancelled(future)
