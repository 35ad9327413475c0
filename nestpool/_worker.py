"""The worker process: its main loop, its task runners and its wire protocol.

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
- Results of a chunk are flushed at least every ``FLUSH_SECONDS``, so a death
  costs at most that much finished-but-unreported work.

It must never import parent-side modules (``_dispatcher``, ``_pool``, the decorators).
"""

from __future__ import annotations

import itertools
import os
import queue
import select
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from . import _routing
from ._compute_slots import enter_task_thread, task_ended, use_compute_slots
from ._errors import InitializerError
from ._futures import become_helper
from ._item_loop import run_span
from ._per_worker import close_all as close_per_worker_instances
from ._protocol import (
    SHAPE_SINGLE,
    Ack,
    ArgsFailed,
    Booted,
    Call,
    Exit,
    InitFailed,
    Ready,
    Result,
    pack,
    pack_outcomes,
    unpack,
)
from ._serialize import (
    ExceptionWithTraceback,
    exception_payload,
    format_remote_traceback,
    loads,
    pickling_error,
)
from ._subtask_pool import SubtaskPool, this_process_subtask_pool
from ._worker_start import (
    WorkerConfig,
    die_with_parent,
    flush_std_streams,
    forget_forkserver,
)

__all__ = ["FUNCTION_CACHE", "worker_main"]

FLUSH_SECONDS = 0.005
#: How many callables a worker keeps by key. The parent records which keys it
#: sent each worker with the same rule (least recently sent goes first), in
#: the order of the channel, so both sides always agree on what the worker has.
FUNCTION_CACHE = 64


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


class _Channel:
    """The worker's end of its pipe; sends are serialised between runners."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: Booted | Ready | InitFailed | Ack | Result | ArgsFailed) -> None:
        self.send_bytes(pack(message))

    def send_bytes(self, data: bytes) -> None:
        try:
            with self.lock:
                self.conn.send_bytes(data)
        except OSError:
            # The parent is gone; the main thread sees EOF and exits.
            pass


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
    channel = _Channel(conn)
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


#: callables unpickled in this process, by key (least recently used goes first)
_loaded: OrderedDict[bytes, Callable[..., Any]] = OrderedDict()
_loaded_lock = threading.Lock()


def _load_function(key: bytes, pickled: bytes | None) -> Callable[..., Any]:
    """The callable of that key, unpickled once while it is used.

    Raises:
        LookupError: the worker was not sent that callable (a bug in nestpool).
        BaseException: what unpickling it raised.
    """
    with _loaded_lock:
        cached = _loaded.get(key)
        if cached is not None:
            _loaded.move_to_end(key)
            return cached
    if pickled is None:
        raise LookupError("this worker was not sent the function")
    fn: Callable[..., Any] = loads(pickled)
    with _loaded_lock:
        _loaded[key] = fn
        if len(_loaded) > FUNCTION_CACHE:
            _loaded.popitem(last=False)
    return fn


def _runner(
    runner: int,
    next_call: Callable[[], tuple[Call, bytes | None] | None],
    channel: _Channel,
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
            _run_call(runner, call, pickled, channel, marks)
        finally:
            del call
            task_ended()


def _run_call(
    runner: int, call: Call, pickled: bytes | None, channel: _Channel, marks: Any
) -> None:
    task_id, name, shape = call.task_id, call.name, call.shape
    try:
        fn = _load_function(call.function[0], pickled)
    except BaseException as exc:
        error = pickling_error(name, "function (unpickling in the worker)", exc)
        channel.send(ArgsFailed(task_id, exception_payload(error, name)))
        return
    try:
        items: Sequence[Any] = loads(call.args)
    except BaseException as exc:
        error = pickling_error(name, "argument (unpickling in the worker)", exc)
        channel.send(ArgsFailed(task_id, exception_payload(error, name)))
        return
    del call
    if type(items) is range:
        # A map over a range sends its chunks as ranges; indexing a range
        # makes each int with generic arithmetic, listing it is a C loop.
        items = list(items)
    if shape == SHAPE_SINGLE and len(items) == 1:
        _run_single(task_id, name, fn, items[0], channel)
        return
    _run_chunk(runner, task_id, name, fn, items, shape, channel, marks)


def _run_single(
    task_id: int, name: str, fn: Callable[..., Any], item: tuple[Any, ...], channel: _Channel
) -> None:
    """One call (``task(...)``, ``Pool.submit``): its value or its exception."""
    args, kwargs = item
    del item
    started = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        outcome = [(False, exception_payload(exc, name))]
        del exc
        busy = time.perf_counter() - started
        _send_outcomes(channel, name, task_id, first=0, values=[], outcomes=outcome, busy=busy)
        return
    del args, kwargs
    busy = time.perf_counter() - started
    _send_outcomes(channel, name, task_id, first=0, values=[value], busy=busy)


#: A chunk runs in batches; each batch is at most this many times the last
#: (the first is one item), and aims at FLUSH_SECONDS of work.
_BATCH_GROWTH = 8
_MAX_BATCH = 1 << 16


def _run_chunk(
    runner: int,
    task_id: int,
    name: str,
    fn: Callable[..., Any],
    items: Sequence[Any],
    shape: int,
    channel: _Channel,
    marks: Any,
) -> None:
    """Run a chunk's items in turn, flushing outcomes every ``FLUSH_SECONDS``.

    Each item's index is written to this runner's mark right before the item
    runs, so the parent knows exactly which item a death interrupted. The
    clock is read once per batch, not per item, and the loops are as tight
    as Python allows (a tiny task's cost per item is mostly this loop).

    Args:
        shape: how an item reads: ``SHAPE_UNARY`` (the argument), ``SHAPE_ARGS``
            (a tuple of arguments) or ``SHAPE_SINGLE`` (``(args, kwargs)``).
    """
    # While every item succeeds, only the values are kept and sent (a third
    # of the pickling of (ok, value) pairs, per item); from the first failure
    # on, this flush carries (ok, value_or_exception) outcomes.
    values: list[Any] = []
    outcomes: list[tuple[bool, Any]] | None = None
    count = len(items)
    first = index = 0  # the first item of the next flush; the next to run
    batch = 1
    clock = time.perf_counter
    flushed_at = started = clock()
    while index < count:
        end = min(count, index + batch)
        batch_started = clock()
        done: list[Any] = values if outcomes is None else []
        end, exc = run_span(fn, items, index, end, shape, done, marks, runner)
        if exc is not None:
            if outcomes is None:
                outcomes = [(True, v) for v in values]
            else:
                outcomes.extend(zip(itertools.repeat(True), done))
            outcomes.append((False, exception_payload(exc, name)))
            del exc
            end += 1
        elif outcomes is not None:
            outcomes.extend(zip(itertools.repeat(True), done))
        executed = end - index
        index = end
        del done
        now = clock()
        # The next batch: FLUSH_SECONDS of work at the speed just measured.
        per_item = (now - batch_started) / executed
        target = int(FLUSH_SECONDS / per_item) if per_item > 0 else _MAX_BATCH
        batch = max(1, min(target, batch * _BATCH_GROWTH, _MAX_BATCH))
        if index >= count or now - flushed_at >= FLUSH_SECONDS:
            _send_outcomes(
                channel,
                name,
                task_id,
                first=first,
                values=values,
                outcomes=outcomes,
                final=index >= count,
                busy=now - started,
            )
            first = index
            values = []
            outcomes = None
            flushed_at = started = now
    if not count:
        _send_outcomes(channel, name, task_id, first=0, values=[], busy=0.0)


def _send_outcomes(
    channel: _Channel,
    name: str,
    task_id: int,
    *,
    first: int,
    values: list[Any],
    outcomes: list[tuple[bool, Any]] | None = None,
    final: bool = True,
    busy: float,
) -> None:
    """Send a ``Result``: the items from ``first`` on, as ``values`` while every
    one succeeded, else as ``outcomes`` (``(ok, value_or_exception)`` pairs)."""
    size = len(values) if outcomes is None else len(outcomes)
    packed, plain = pack_outcomes(name, values, outcomes)
    channel.send(Result(task_id, first, size, final, busy, packed, plain))
