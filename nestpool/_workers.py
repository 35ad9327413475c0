"""The dispatcher's worker table: the life of each worker process, from its
start to its burial, and the pipe and sentinel the dispatcher watches for it.

A worker is STARTING until its ``Ready`` (after the initializer), READY while
it takes calls, RETIRING once sent ``Exit`` (it reached
``max_tasks_per_child``, or the pool shuts down), DEAD once reaped. A worker
that dies unexpectedly is replaced on the dispatcher's next turn. Workers that
keep dying before they are ready (``MAX_STARTUP_DEATHS`` in a row) break the
pool, rather than respawn for ever; a SIGKILL before the worker's own code ran
(``Booted``) came from outside and does not count.

What it owns: the worker handles and their lookups by pipe and sentinel, the
processes and their pipes, the start-up death count, the compute slots the
workers share, and which worker takes the next task. It never resolves a
future and never decides a task's fate: ``bury`` returns a ``Death`` and the
dispatcher settles the dead worker's tasks through the task table.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.process
import multiprocessing.util
import os
import select
import struct
import sys
from collections import deque
from collections.abc import Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ._errors import InitializerError, describe_exit, signal_name
from ._protocol import SHAPE_ARGS, SHAPE_SINGLE, SHAPE_UNARY, Call, Exit, Message, pack, unpack
from ._records import Task, TaskState, WorkerHandle, WorkerState
from ._wording import start_failed, startup_failure
from ._worker import worker_main
from ._worker_calls import FUNCTION_CACHE
from ._worker_start import WorkerConfig

if TYPE_CHECKING:
    from ._options import PoolOptions

__all__ = ["MAX_STARTUP_DEATHS", "Death", "WorkerTable", "close_in_fork_child"]

logger = logging.getLogger("nestpool")

#: Workers that die before they are ready this many times in a row break the
#: pool, as a failing initializer does (no endless respawn loop).
MAX_STARTUP_DEATHS = 3


def close_in_fork_child(obj: Any) -> None:
    """``register_after_fork`` callback: close the parent's end in a child."""
    # A worker forked later must not hold another worker's parent end: the
    # parent's death would then never reach that worker as end-of-channel.
    obj.close()


class Death(NamedTuple):
    """What a worker's death leaves for the dispatcher to settle."""

    exitcode: int | None
    #: the tasks it held (sent or running)
    tasks: list[Task]
    #: how many of them it was running
    running: int
    #: set when this death broke the pool (too many start-up deaths in a row)
    broke: InitializerError | None


class WorkerTable:
    """The worker processes of one dispatcher."""

    def __init__(self, options: PoolOptions, *, name: str, cores: int | None) -> None:
        processes, tasks_per_process = options.processes, options.tasks_per_process
        self.processes = processes
        self.threads = options.threads
        self.tasks_per_process = tasks_per_process
        self.context = options.context
        self.initializer = options.initializer
        self.max_tasks_per_child = options.max_tasks_per_child
        self.name = name
        #: The workers' shared semaphore of ``cores`` compute slots, when more
        #: process tasks can run at once than there are cores (see
        #: ``_compute_slots``, "compute slots"); else None.
        self.compute_slots: Any = None
        if cores is not None and processes * tasks_per_process > cores:
            self.compute_slots = self.context.Semaphore(cores)
        self._workers: list[WorkerHandle] = []
        self._by_conn: dict[Any, WorkerHandle] = {}
        self._by_sentinel: dict[int, WorkerHandle] = {}
        self._counter = itertools.count()
        self._startup_deaths = 0
        #: pids of workers that died unexpectedly and whose replacement is due
        #: (only for the log line that says which worker replaces which).
        self._replacing: deque[int] = deque()
        #: the main script's path, read now, while the script runs (this
        #: table is made by the first call's caller): see ``_main_file_kept``
        self._main_file: str | None = getattr(sys.modules.get("__main__"), "__file__", None)

    # ------------------------------------------------------------ questions

    def handles(self) -> list[WorkerHandle]:
        """The workers not yet reaped (a snapshot: any thread may ask)."""
        return [w for w in list(self._workers) if w.state is not WorkerState.DEAD]

    def missing(self) -> int:
        """How many workers to start to have ``processes`` starting or ready."""
        active = (WorkerState.STARTING, WorkerState.READY)
        return self.processes - sum(1 for w in self._workers if w.state in active)

    def watched(self) -> list[Any]:
        """What the dispatcher waits on for its workers: pipes, then sentinels."""
        return [*self._by_conn, *self._by_sentinel]

    def by_conn(self, ready: Any) -> WorkerHandle | None:
        """The worker whose pipe this is."""
        return self._by_conn.get(ready)

    def by_sentinel(self, ready: Any) -> WorkerHandle | None:
        """The worker whose sentinel this is (it ended)."""
        return self._by_sentinel.get(ready) if isinstance(ready, int) else None

    def open_workers(self) -> list[WorkerHandle]:
        """The workers that can take a task now: ready, not being stopped (a
        timeout: never send it more), with a free runner and below
        ``max_tasks_per_child``. A task goes only to a free runner, so it
        starts at once: nothing waits in a worker's pipe, where it could no
        longer be cancelled."""
        return [
            w
            for w in self._workers
            if w.state is WorkerState.READY and w.kill_reason is None and not self.is_full(w)
        ]

    def is_full(self, worker: WorkerHandle) -> bool:
        """True if ``worker`` can take no more tasks for now."""
        limit = self.max_tasks_per_child
        return len(worker.tasks) >= self.tasks_per_process or (
            limit is not None and worker.sent_count >= limit
        )

    @staticmethod
    def pick(candidates: list[WorkerHandle]) -> WorkerHandle:
        """The worker to send the next task to: the least busy, so that
        ``tasks_per_process > 1`` still spreads work over every process before
        doubling up on one."""
        return min(candidates, key=lambda w: len(w.tasks))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> WorkerHandle:
        """Start one worker process.

        Raises:
            InitializerError: it could not be started (the pool is broken).
        """
        index = next(self._counter)
        parent_conn, child_conn = self.context.Pipe(duplex=True)
        # Per runner: the index of the item it runs; then whether the worker
        # holds a compute slot (so that its death gives the slot back); then
        # per runner the id of the last task it started (``started``).
        marks = self.context.RawArray("q", 2 * self.tasks_per_process + 1)
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
        multiprocessing.util.register_after_fork(parent_conn, close_in_fork_child)
        try:
            with _main_file_kept(self._main_file):
                process.start()
        except BaseException as exc:
            # Under spawn and forkserver the initializer and its arguments are
            # pickled here, as the process starts (a Queue may only be pickled
            # then): one that cannot be is the initializer's failure.
            child_conn.close()
            parent_conn.close()
            raise start_failed(exc, self.context.get_start_method()) from exc
        child_conn.close()
        worker = WorkerHandle(index, process, parent_conn, marks)
        self._workers.append(worker)
        self._by_conn[parent_conn] = worker
        self._by_sentinel[process.sentinel] = worker
        if self._replacing:
            logger.info(
                "started worker %s (pid %d) to replace worker pid %d",
                process.name,
                worker.pid,
                self._replacing.popleft(),
            )
        else:
            logger.debug("started worker %s (pid %d)", process.name, worker.pid)
        return worker

    def booted(self, worker: WorkerHandle) -> None:
        """It said ``Booted``: its own code runs (the initializer is next)."""
        worker.booted = True

    def ready(self, worker: WorkerHandle) -> None:
        """It said ``Ready``: it takes calls, and the start-up deaths in a row
        are over."""
        if worker.state is WorkerState.STARTING:
            worker.state = WorkerState.READY
        self._startup_deaths = 0

    def send_call(self, worker: WorkerHandle, task: Task) -> None:
        """Send ``task`` to ``worker`` (it now holds it, SENT)."""
        task.assign(worker)
        worker.sent_count += 1
        chunk = task.chunk
        shape = SHAPE_SINGLE if chunk is None else SHAPE_UNARY if chunk.unary else SHAPE_ARGS
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
        # A task with a timeout marks each item as it starts, to tell which
        # one ran too long; so does a chunk run again after a death in a
        # batch of items, to tell which one died.
        ack = task.timeout is not None
        exact = ack or task.exact_marks
        self._send(worker, Call(task.id, task.name, function, task.payload, shape, ack, exact))

    def started(self, worker: WorkerHandle) -> list[tuple[int, int]]:
        """``(task id, runner)`` of the task each runner of the (dead) worker
        started last, read from its start marks (a call answers ``Ack`` only
        if it has a timeout; the others are known to have started from here)."""
        first = self.tasks_per_process + 1
        return [(worker.marks[first + runner], runner) for runner in range(self.tasks_per_process)]

    def messages(self, worker: WorkerHandle, *, readable: bool = False) -> list[Message]:
        """The messages waiting in ``worker``'s pipe, in one read when they
        fit in it (``Connection.recv_bytes`` reads a message's header and
        body apart, and a poll before each found whether another waited:
        three system calls a message). A message whose end has not arrived
        yet waits in ``worker.unread`` for the next read; the worker writes
        it, or dies (then the read finds the end of the pipe).

        Args:
            readable: a poll just found the pipe readable. Otherwise (a dead
                worker's sentinel fired) it is polled first: a process the
                task forked may still hold the worker's end open, and a read
                with nothing to read would block the dispatcher.
        """
        conn = worker.conn
        if conn not in self._by_conn:
            return []
        found: list[Message] = []
        fd = conn.fileno()
        if not readable and not _readable(fd):
            return found
        try:
            while True:
                data = os.read(fd, _READ_SIZE)
                if not data:
                    raise EOFError
                unread = worker.unread
                if unread:
                    unread += data
                    del unread[: _take_messages(unread, found)]
                else:
                    used = _take_messages(data, found)
                    if used < len(data):
                        unread += data[used:]
                # A read that filled its buffer may have left more behind (a
                # dead worker's last messages are all read before its burial).
                if len(data) < _READ_SIZE or not _readable(fd):
                    return found
        except (EOFError, OSError):
            # The worker closed its end: it is exiting; its sentinel follows.
            self._by_conn.pop(conn, None)
        return found

    def retire(self, worker: WorkerHandle) -> None:
        """Ask it to finish what it holds, then leave."""
        logger.debug("retiring worker pid %d after %d tasks", worker.pid, worker.sent_count)
        worker.state = WorkerState.RETIRING
        self._send(worker, Exit())

    def retire_spent(self) -> None:
        """Retire the idle workers that reached ``max_tasks_per_child``."""
        limit = self.max_tasks_per_child
        if limit is None:
            return
        for worker in self._workers:
            if (
                worker.state is WorkerState.READY
                and not worker.tasks
                and worker.sent_count >= limit
            ):
                self.retire(worker)

    def retire_all(self) -> bool:
        """Retire every live worker; False once none is left."""
        live = self.handles()
        for worker in live:
            if worker.state is not WorkerState.RETIRING:
                self.retire(worker)
        return bool(live)

    def stop(self, worker: WorkerHandle, reason: str | None = None, *, rerun: bool = False) -> None:
        """Kill it now; ``reason`` (why the pool stopped it) goes into its
        tasks' errors, or, with ``rerun`` (a task of it was stopped by its
        user), into the log: its other tasks then run again elsewhere."""
        if reason is not None:
            worker.kill_reason = reason
        if rerun and worker.process.exitcode is None:
            # (Dead already, of its own accord: its other tasks meet that
            # death as it is, not as a stop.)
            worker.rerun_held = True
        _kill(worker.process)

    def stop_all(self, reason: str | None = None) -> None:
        """Kill every live worker."""
        for worker in self.handles():
            self.stop(worker, reason)

    def bury(self, worker: WorkerHandle, replace: bool) -> Death:
        """``worker``'s sentinel fired: reap the process and close its pipe.

        Args:
            replace: the pool still starts workers (not broken or terminated):
                an unexpected death is to be replaced, and a death before
                ``Ready`` counts towards breaking the pool.
        """
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
            if replace:
                self._replacing.append(worker.pid)
        else:
            logger.debug("worker pid %d exited (%s)", worker.pid, describe_exit(exitcode))
        tasks = list(worker.tasks.values())
        running = sum(1 for task in tasks if task.state is TaskState.RUNNING)
        broke = None
        if not was_ready and replace and (worker.booted or signal_name(exitcode) != "SIGKILL"):
            # A SIGKILL before the worker's own code ran came from outside (the
            # OOM killer, kill -9) while its interpreter started: it says nothing
            # about the initializer or the main module, so it must not count
            # towards breaking the pool (workers killed at random while they
            # start would otherwise break a healthy pool).
            self._startup_deaths += 1
            if self._startup_deaths >= MAX_STARTUP_DEATHS:
                broke = startup_failure(
                    MAX_STARTUP_DEATHS, worker.booted, self.initializer is not None, exitcode
                )
        return Death(exitcode, tasks, running, broke)

    def close_all(self) -> None:
        """Kill and reap every worker (the dispatcher's very end)."""
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

    # ------------------------------------------------------------ helpers

    def _give_back_compute_slots(self, worker: WorkerHandle) -> None:
        """A dead worker held a compute slot: release it, so that a death (a
        timeout's kill among them) costs the pool no slot."""
        flag = self.tasks_per_process
        if self.compute_slots is not None and worker.marks[flag]:
            worker.marks[flag] = 0
            self.compute_slots.release()

    def _send(self, worker: WorkerHandle, message: Call | Exit) -> None:
        try:
            worker.conn.send_bytes(pack(message))
        except OSError:
            pass  # it is dying; its sentinel will tell


#: how much one read of a worker's pipe takes at most: a pipe's whole buffer
#: (Linux's default), every message waiting at once
_READ_SIZE = 1 << 16
#: ``multiprocessing.connection``'s framing: a message's length, or -1 and
#: then its length on 8 bytes (2 GiB and more)
_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")


def _take_messages(data: bytes | bytearray, found: list[Message]) -> int:
    """Unpack every whole message at the start of ``data`` (as
    ``Connection.send_bytes`` framed them) into ``found``; how many bytes
    they took (the rest is the start of the next message)."""
    end = len(data)
    used = 0
    with memoryview(data) as view:
        while end - used >= 4:
            (size,) = _LENGTH.unpack_from(data, used)
            start = used + 4
            if size == -1:
                if end - start < 8:
                    break
                (size,) = _LONG_LENGTH.unpack_from(data, start)
                start += 8
            if end - start < size:
                break
            found.append(unpack(view[start : start + size]))
            used = start + size
    return used


def _readable(fd: int) -> bool:
    ready = select.poll()
    ready.register(fd, select.POLLIN)
    return bool(ready.poll(0))


def _kill(process: Any) -> None:
    try:
        if process.exitcode is None:
            process.kill()
    except (OSError, ValueError, AttributeError):
        pass


@contextmanager
def _main_file_kept(path: str | None) -> Generator[None, None, None]:
    """Under spawn and forkserver, multiprocessing tells a new process which
    script to run as ``__mp_main__`` from ``__main__.__file__``; the
    interpreter deletes that once the script's last line has run. A worker
    started after that (the pool left open finishes its work at exit, as
    ``ProcessPoolExecutor`` does) would not know the script, nor the
    functions defined in it: the path read while the script ran is put back
    for the start."""
    main = sys.modules.get("__main__")
    if path is None or main is None or hasattr(main, "__file__"):
        yield
        return
    main.__file__ = path
    try:
        yield
    finally:
        main.__dict__.pop("__file__", None)
