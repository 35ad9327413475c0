"""The worker process: its life, how it reads its calls, and its task runners.

What it owns, in the worker process::

    tasks_per_process=1 (on Linux):
    parent ==(own duplex pipe)==> main thread: recv, ACK, run, RESULT
                                  watcher thread: sleeps until the pipe hangs up -> os._exit

    tasks_per_process>1 (or no POLLRDHUP):
    parent ==(own duplex pipe)==> reader thread: recv loop ---> local queue
                                      |  EOF: the parent is gone -> os._exit
                                      v
         runner: the main thread (tasks_per_process=1), else that many
                 runner threads: ACK, run, RESULT
                                      |
                  subtasks -> this process's persistent SubtaskPool

- With ``tasks_per_process=1`` the main thread runs the initializer and then
  every process task, as in ``ProcessPoolExecutor``: a task may install signal
  handlers, and objects the initializer made that are bound to their thread
  (a ``sqlite3`` connection) work in tasks. It reads its calls from the pipe
  itself: handing each call over from a reader thread cost a thread switch
  per task. With more, tasks run on runner threads, a reader thread hands
  them the calls, and the main thread only waits for them.
- The end of the channel (a dead parent) is noticed whatever the tasks are
  doing: by the reader thread, or with one runner by a watcher thread that
  polls the pipe for its hang-up alone (``POLLRDHUP``: the calls arriving do
  not wake it). PR_SET_PDEATHSIG alone is not enough: it fires when the
  thread that started the worker ends.
  PR_SET_PDEATHSIG is set too, for a task that holds the GIL in C code so
  that no other thread can run; and a worker drops the
  forkserver's "alive" pipe, which would keep the forkserver, its parent, alive.
- The one thread that reads the channel keeps the callables it was sent by
  key, in the same bounded order as the parent's record of them
  (``FUNCTION_CACHE``), so a function sent
  by value crosses once per worker, not once per call.
- SIGINT is ignored: Ctrl-C is the parent's decision.
- Each runner writes the index of the item it is running into a shared array
  slot before running it, so that when the worker dies the parent knows exactly
  which item of a chunk killed it (the rest are run again elsewhere).
- What a runner does with one call (loading its function, running it or a
  chunk's items, sending the outcomes) is ``_worker_calls``'s.

It must never import parent-side modules (``_dispatcher``, ``_pool``, the decorators).
"""

from __future__ import annotations

import os
import queue
import select
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from . import _routing
from ._compute_slots import enter_task_thread, task_ended, use_compute_slots
from ._errors import InitializerError
from ._futures import become_helper
from ._per_worker import close_all as close_per_worker_instances
from ._protocol import (
    Ack,
    Booted,
    Call,
    Exit,
    InitFailed,
    Ready,
    unpack,
)
from ._serialize import (
    ExceptionWithTraceback,
    format_remote_traceback,
)
from ._subtask_pool import SubtaskPool, this_process_subtask_pool
from ._worker_calls import FUNCTION_CACHE, Channel, run_call
from ._worker_start import (
    WorkerConfig,
    die_with_parent,
    flush_std_streams,
    forget_forkserver,
)

__all__ = ["WorkerRoute", "worker_main"]


class WorkerRoute:
    """The route inside a worker: process tasks inline, subtasks to the
    process's persistent thread pool (or inline with ``threads=0``)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._pool: SubtaskPool | None = None

    def submit_task(
        self, options: _routing.TaskOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        from ._inline import run_inline

        return run_inline(options.fn, args, kwargs)

    def map_task(
        self,
        options: _routing.TaskOptions,
        iterables: Any,
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
    ) -> Any:
        from ._inline import map_inline

        return map_inline(options.fn, iterables)

    def subtask_pool(self) -> SubtaskPool | None:
        pool = self._pool
        if pool is None and self.threads != 0:
            pool = self._pool = this_process_subtask_pool(self.threads)
        return pool


def worker_main(
    conn: Connection,
    marks: Any,
    config: WorkerConfig,
    compute_slots: Any = None,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> None:
    """Entry point of a worker process (the target of ``multiprocessing.Process``).

    Args:
        marks: shared array: per runner, the index of the item it runs; then
            1 while this worker holds a compute slot; then per runner the id
            of the task it started last (``Call.ack``).
        compute_slots: the pool's semaphore of compute slots, or None (see
            ``_compute_slots``, "compute slots").
        initializer: the pool's initializer, called with ``initargs``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Forked from the dispatcher's thread, the main thread carries its name.
    threading.current_thread().name = "MainThread"
    use_compute_slots(compute_slots)
    die_with_parent()
    forget_forkserver()
    channel = Channel(conn)
    # Before the initializer: a worker killed before this was killed while its
    # interpreter started, which says nothing about the initializer.
    channel.send(Booted(os.getpid()))
    _routing.enter_worker(WorkerRoute(config.threads))

    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            text = format_remote_traceback(exc)
            error = InitializerError(
                f"the pool's initializer raised {type(exc).__name__}: {exc} "
                "(the pool stops starting workers; fix the initializer)",
                traceback_text=text,
            )
            channel.send(InitFailed(ExceptionWithTraceback(error, text)))
            flush_std_streams()
            os._exit(1)

    runners = config.tasks_per_process
    receive = _CallReader(conn)
    if runners == 1 and _CAN_WATCH:
        # One runner: the main thread reads its calls itself (no hand-off
        # through a queue to another thread, a thread switch per call), and a
        # watcher thread, which sleeps until the channel ends, stands for the
        # reader's other duty: noticing the parent's death whatever runs.
        watcher = threading.Thread(
            target=_watch_channel,
            args=(conn, receive),
            name=f"nestpool-worker-{config.index}-watcher",
            daemon=True,
        )
        watcher.start()
        channel.send(Ready(os.getpid()))
        _runner(0, receive, channel, marks, runners)
    else:
        calls: queue.SimpleQueue[tuple[Call, bytes | None] | None] = queue.SimpleQueue()
        threads = [
            threading.Thread(
                target=_runner,
                args=(runner, calls.get, channel, marks, runners),
                name=f"nestpool-worker-{config.index}-runner-{runner}",
                daemon=True,
            )
            for runner in range(runners if runners > 1 else 0)
        ]
        for thread in threads:
            thread.start()
        reader = threading.Thread(
            target=_read_channel,
            args=(receive, calls, runners),
            name=f"nestpool-worker-{config.index}-reader",
            daemon=True,
        )
        reader.start()
        channel.send(Ready(os.getpid()))
        if threads:
            for thread in threads:
                thread.join()
        else:
            _runner(0, calls.get, channel, marks, runners)
    pool = this_process_subtask_pool(None) if config.threads != 0 else None
    if pool is not None:
        pool.shutdown(wait=True)
    # multiprocessing ends a worker with os._exit, past atexit: close here.
    close_per_worker_instances()
    flush_std_streams()


#: Linux's poll flag for "the other end hung up", which a thread can wait for
#: on the pipe without being woken by the data the runner reads from it
_CAN_WATCH = hasattr(select, "POLLRDHUP")


class _CallReader:
    """Reads the channel, in its order, for the one thread that reads it:
    each call with its callable's pickle looked up by key (the same bounded
    order as the parent's record of what it sent, ``FUNCTION_CACHE``); None
    at ``Exit``. At the end of the channel (the parent died) it ends the
    process."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.functions: OrderedDict[bytes, bytes] = OrderedDict()
        #: set at ``Exit``: the channel's end is expected from then on
        self.exiting = False

    def __call__(self) -> tuple[Call, bytes | None] | None:
        functions = self.functions
        while True:
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                # The end of the channel: the parent died (or closed us
                # abruptly). Nobody is left to take results; leave at once,
                # whatever runs.
                flush_std_streams()
                os._exit(0)
            message = unpack(data)
            if isinstance(message, Call):
                key, pickled = message.function
                if pickled is None:
                    pickled = functions.get(key)
                    if pickled is not None:
                        functions.move_to_end(key)
                else:
                    functions[key] = pickled
                    if len(functions) > FUNCTION_CACHE:
                        functions.popitem(last=False)
                return message, pickled
            if isinstance(message, Exit):
                self.exiting = True
                return None


def _read_channel(
    receive: _CallReader,
    calls: queue.SimpleQueue[tuple[Call, bytes | None] | None],
    runners: int,
) -> None:
    """The reader thread (several runners): hand each call to the runners;
    at ``Exit`` tell every runner to stop."""
    while True:
        handed = receive()
        if handed is None:
            break
        calls.put(handed)
    for _ in range(runners):
        calls.put(None)


def _watch_channel(conn: Connection, receive: _CallReader) -> None:
    """The watcher thread (one runner, reading the channel itself): sleep
    until the parent's end of the channel closes (it died), then end the
    process, whatever the runner is doing. Only the hang-up wakes it, not
    the calls arriving."""
    watch = select.poll()
    watch.register(conn.fileno(), select.POLLRDHUP)
    while True:
        try:
            events = watch.poll()
        except InterruptedError:  # pragma: no cover - retried by Python itself
            continue
        if any(event & select.POLLNVAL for _, event in events):
            return  # the worker closed its end: it is leaving anyway
        if events and not receive.exiting:
            flush_std_streams()
            os._exit(0)
        if events:
            return


def _runner(
    runner: int,
    next_call: Callable[[], tuple[Call, bytes | None] | None],
    channel: Channel,
    marks_array: Any,
    runners: int,
) -> None:
    """Run the calls ``next_call`` returns (read from the channel, or handed
    over by the reader thread), one at a time, until it returns None.

    Args:
        runner: this runner's index: its entry in ``marks_array`` holds the
            index of the item it runs.
        marks_array: the worker's shared array of marks (see ``worker_main``).
    """
    become_helper()
    # The shared array as native 8-byte integers: a memoryview's store is a
    # C call, cheap enough to make before every item of a chunk.
    marks = memoryview(marks_array).cast("B").cast("q")
    enter_task_thread(marks, runners)  # the process's "holds a compute slot" flag
    started = runners + 1  # then, per runner, the id of the task it started last
    while True:
        handed = next_call()
        if handed is None:
            return
        call, pickled = handed
        del handed
        marks[runner] = 0
        marks[started + runner] = call.task_id
        if call.ack:
            channel.send(Ack(call.task_id, runner))
        try:
            run_call(runner, call, pickled, channel, marks)
        finally:
            del call
            task_ended()
