"""Task functions and objects for the fault tests (importable by workers under
every start method).

Tasks that the test must catch "in the act" write a ready file (their pid) into
a directory the test watches: ``ready(directory, name)``. Objects that fail to
cross the process boundary on purpose live here too, so that the failure is the
one meant (not a failure to import the test module).
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import re
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nestpool import _routing, process_task, thread_subtask

# ----------------------------------------------------------------- ready files


def ready(directory: str, name: str) -> None:
    """Say 'started' to the test: write this process's pid to ``directory/name``."""
    path = Path(directory) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(path)  # atomic: the test never reads a half-written pid


def read_ready(directory: str, name: str) -> int | None:
    """The pid a task wrote with ``ready``, or None if it has not started."""
    try:
        return int((Path(directory) / name).read_text())
    except (FileNotFoundError, ValueError):
        return None


def log_run(directory: str, item: int) -> None:
    """Append 'item pid' to ``directory/runs.log`` (one line per execution)."""
    with open(Path(directory) / "runs.log", "a") as handle:
        handle.write(f"{item} {os.getpid()}\n")


def read_runs(directory: str) -> list[tuple[int, int]]:
    """Every (item, pid) that ``log_run`` recorded, in order."""
    path = Path(directory) / "runs.log"
    if not path.exists():
        return []
    return [
        (int(item), int(pid))
        for item, pid in (line.split() for line in path.read_text().split("\n") if line)
    ]


# ------------------------------------------------------------------ plain tasks


@process_task
def square(x: int) -> int:
    """A trivial process task."""
    return x * x


@process_task
def getpid(_: object = None) -> int:
    """The worker's pid."""
    return os.getpid()


@process_task
def slow_square(x: int, seconds: float) -> tuple[int, int]:
    """Sleep, then return (x * x, pid)."""
    time.sleep(seconds)
    return x * x, os.getpid()


@process_task
def hold(directory: str, name: str, seconds: float = 60.0) -> int:
    """Write a ready file, then sleep (until killed, or ``seconds``); return the pid."""
    ready(directory, name)
    time.sleep(seconds)
    return os.getpid()


# ---------------------------------------------------------------- worker deaths


@process_task
def hold_until(directory: str, name: str, gate: str) -> int:
    """Write a ready file, then wait until the file ``gate`` exists; return the pid."""
    ready(directory, name)
    deadline = time.monotonic() + 60
    while not (Path(directory) / gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate!r} never opened")
        time.sleep(0.01)
    return os.getpid()


@process_task
def exit_now(code: int, directory: str) -> None:
    """Log the run, then end the worker process at once, skipping cleanup."""
    log_run(directory, code)
    os._exit(code)


@process_task
def segfault(directory: str) -> None:
    """Log the run, then crash the worker in native code (a read of address 0)."""
    log_run(directory, -11)
    faulthandler.disable()  # no stack dump on the test's stderr: just the crash
    ctypes.string_at(0)


@process_task
def logged_square(x: int, directory: str) -> int:
    """Log the run, return x * x."""
    log_run(directory, x)
    return x * x


def limit_address_space(extra_bytes: int) -> None:
    """Initializer: cap this worker's virtual memory at its size now + extra_bytes."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[0])
    limit = pages * resource.getpagesize() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@process_task
def allocate(nbytes: int) -> int:
    """Allocate ``nbytes`` at once (MemoryError past the RLIMIT_AS cap)."""
    block = bytearray(nbytes)
    return len(block)


@process_task
def grow_memory(directory: str, step: int, seconds: float) -> None:
    """Say 'ready', then keep allocating (the test plays the OOM killer)."""
    ready(directory, "grow")
    blocks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        blocks.append(bytearray(step))  # bytearray(n) is zeroed: the pages are touched
        time.sleep(0.01)


@process_task
def chunk_item(x: int, bad: int, directory: str, how: str) -> int:
    """A map item: log the run; the ``bad`` one kills its worker (``how``)."""
    log_run(directory, x)
    if x == bad:
        if how == "exit":
            os._exit(3)
        ready(directory, "bad")
        time.sleep(60)  # the test SIGKILLs it
    time.sleep(0.02)  # longer than the worker's flush period: each result is sent
    return x * 10


# ------------------------------------------------------------------------ time


@process_task(timeout=0.5)
def sleep_timed(seconds: float) -> str:
    """A task with a 0.5 s timeout that sleeps ``seconds``."""
    time.sleep(seconds)
    return "finished"


@process_task(timeout=0.5)
def spin_timed(seconds: float) -> str:
    """A task with a 0.5 s timeout busy in a CPU loop for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "finished"


@process_task(timeout=1.0)
def timed_item(x: int, slow: int) -> int:
    """1 s timeout; the ``slow`` item sleeps past it, the others take 0.4 s each."""
    time.sleep(30 if x == slow else 0.4)
    return x + 100


@process_task(timeout=0.3)
def near_timeout(seconds: float) -> float:
    """0.3 s timeout; sleeps about that long (a result racing the kill)."""
    time.sleep(seconds)
    return seconds


# -------------------------------------------------------------------- pickling


def raise_on_load(message: str) -> None:
    """A reconstructor that fails: unpickling raises."""
    raise ValueError(message)


class FailsToUnpickle:
    """Pickles fine; unpickling calls a function that raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return raise_on_load, ("cannot rebuild FailsToUnpickle",)


class SetstateRaises:
    """Pickles fine; its ``__setstate__`` raises when unpickled."""

    def __init__(self) -> None:
        self.value = 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise RuntimeError("SetstateRaises refuses to be rebuilt")


def _rebuild_in_worker_only(value: int) -> Any:
    if not _routing.in_worker():
        raise LookupError("WorkerOnly cannot be rebuilt outside a worker")
    return WorkerOnly(value)


class WorkerOnly:
    """Rebuilt fine in a worker, but not in the parent."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_in_worker_only, (self.value,)


class HoldsLock:
    """Cannot be pickled: it holds a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


@process_task
def identity(x: Any) -> Any:
    """Return the argument (or its type name for objects without equality)."""
    return x


@process_task
def describe(x: Any) -> str:
    """The argument's type name and repr, as seen in the worker."""
    return f"{type(x).__name__}:{x!r}"


@process_task
def make_result(kind: str) -> Any:
    """Return an object that fails on the way back (``kind`` says how)."""
    if kind == "lock":
        return threading.Lock()
    if kind == "generator":
        return (i for i in range(3))
    if kind == "holds_lock":
        return HoldsLock()
    if kind == "fails_to_unpickle":
        return FailsToUnpickle()
    if kind == "setstate_raises":
        return SetstateRaises()
    if kind == "worker_only":
        return WorkerOnly(1)
    if kind == "ok":
        return "fine"
    raise AssertionError(kind)


@process_task
def map_result(x: int, bad: int, kind: str) -> Any:
    """A map item: the ``bad`` one returns an object that fails (``kind``)."""
    if x == bad:
        return make_result.sync(kind)
    return x * 10


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TwoArgError(Exception):
    """Pickles, but cannot be unpickled: its reduce passes one argument to an
    ``__init__`` that takes two.

    The ``__reduce__`` is explicit: with BaseException's own, tblib (which
    importing ``distributed`` installs for every exception class) rebuilds
    the instance without calling ``__init__``, so a forked worker of a test
    session that has imported Dask would send it across intact.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"error {code}: {reason}")
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args)


class RichError(Exception):
    """An exception with extra attributes that round-trip (state kept in args)."""

    def __init__(self, message: str, code: int, details: dict[str, int]) -> None:
        super().__init__(message, code, details)
        self.code = code
        self.details = details
        self.note = "set in __init__"


@process_task
def raise_kind(kind: str) -> None:
    """Raise an exception of the given kind."""
    if kind == "locked":
        raise LockedError("the database is locked")
    if kind == "two_arg":
        raise TwoArgError(42, "no quorum")
    if kind == "rich":
        error = RichError("rich failure", 7, {"a": 1})
        error.added_later = "after init"  # type: ignore[attr-defined]
        raise error
    if kind == "chained":
        try:
            {}["missing-key"]
        except KeyError as exc:
            raise ValueError("outer failure") from exc
    if kind == "value":
        raise ValueError("plain failure")
    raise AssertionError(kind)


@process_task
def raise_given(error: BaseException) -> None:
    """Raise the exception given."""
    raise error


@thread_subtask
def failing_subtask(started: threading.Event) -> None:
    """A subtask that raises, naming the thread it ran on."""
    started.set()
    name = threading.current_thread().name
    raise KeyError(f"subtask failed on thread {name}")


@process_task
def raise_through_subtask() -> None:
    """A process task whose subtask (on a pool thread) raises; it propagates."""
    started = threading.Event()
    future = failing_subtask(started)
    # Wait until a pool thread runs it, so its frames come from that thread
    # (a waiter would otherwise run the unstarted subtask itself).
    if not started.wait(20):
        raise AssertionError("the subtask never started")
    future.result()


# ----------------------------------------------------------------- initializers


def failing_initializer(message: str) -> None:
    """An initializer that raises."""
    raise ValueError(message)


def exiting_initializer(code: int) -> None:
    """An initializer that ends the process."""
    os._exit(code)


def crashing_initializer() -> None:
    """An initializer that segfaults."""
    faulthandler.disable()
    ctypes.string_at(0)


def sigkill_initializer() -> None:
    """An initializer killed by SIGKILL (as by the OOM killer)."""
    os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ interrupts


@process_task
def sigint_self_then(directory: str, value: int) -> tuple[int, int]:
    """Send SIGINT to this worker, then keep working; return (value, pid)."""
    ready(directory, f"sigint-{value}")
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)  # a handler would run here, at the next bytecode
    return value, os.getpid()


@process_task
def busy(directory: str, name: str, kind: str) -> None:
    """Say 'ready', then stay busy for a minute: sleeping, spinning, waiting on
    spinning subtasks, or in C code holding the GIL."""
    ready(directory, name)
    deadline = time.monotonic() + 60
    if kind == "sleep":
        time.sleep(60)
    elif kind == "spin":
        while time.monotonic() < deadline:
            pass
    elif kind == "subtasks":
        futures = [spin_subtask(60) for _ in range(4)]
        for future in futures:
            future.result()
    elif kind == "gil":
        # C code that never releases the GIL (catastrophic backtracking: 2**40
        # steps): no other thread of this process runs until it ends.
        re.fullmatch(r"(a+)+b", "a" * 40)
    else:
        raise AssertionError(kind)


@thread_subtask
def spin_subtask(seconds: float) -> None:
    """A subtask busy in a CPU loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def python_version() -> str:
    """For messages."""
    return sys.version.split()[0]


@process_task
def soak_task(x: int, seconds: float) -> int:
    """A little work for the chaos soak: sleep, then compute."""
    time.sleep(seconds)
    return sum(range(x % 1000)) + x


@process_task
def start_forkserver_child() -> int | None:
    """Start a process of our own with the forkserver method; its exit code."""
    import multiprocessing

    child = multiprocessing.get_context("forkserver").Process(target=os.getpid)
    child.start()
    child.join(30)
    return child.exitcode


@process_task
def call_sys_exit(code: int) -> None:
    """Raise SystemExit in the task (it travels like any exception)."""
    sys.exit(code)


def _rebuild_parent_only_callable() -> Any:
    if _routing.in_worker():
        raise ImportError("ParentOnlyCallable cannot be rebuilt in a worker")
    return ParentOnlyCallable()


class ParentOnlyCallable:
    """A callable that pickles fine but cannot be rebuilt in a worker."""

    def __call__(self, x: int) -> int:
        return x * x

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_parent_only_callable, ()


_kept_queue: Any = None


def keep_queue(queue: Any) -> None:
    """Initializer: keep a multiprocessing queue for the tasks of this worker."""
    global _kept_queue
    _kept_queue = queue


def put_in_kept_queue(x: int) -> int:
    """Put ``x`` in the queue the initializer kept."""
    _kept_queue.put(x)
    return x


class CustomBaseError(BaseException):
    """A BaseException that is neither an Exception nor one of Python's own."""


_ITEM_RAISES: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "CustomBaseError": CustomBaseError,
}


def raise_at_three(x: int, kind: str, log: str) -> int:
    """``x * 10``, except for 3, which raises the BaseException named ``kind``;
    each item first appends its ``x`` to the file ``log``."""
    with open(log, "a") as handle:
        handle.write(f"{x}\n")
    if x == 3:
        raise _ITEM_RAISES[kind](f"item {x}")
    return x * 10


@process_task
def raise_at_three_task(x: int, kind: str, log: str) -> int:
    """A process task over ``raise_at_three``."""
    return raise_at_three(x, kind, log)


@thread_subtask
def raise_at_three_subtask(x: int, kind: str, log: str) -> int:
    """A subtask over ``raise_at_three``."""
    return raise_at_three(x, kind, log)


@process_task
def map_subtasks_raising_at_three(kind: str, log: str) -> tuple[list[int], str]:
    """In a worker: a chunked map of subtasks whose item 3 raises ``kind``:
    the values handed out before it, and the name of what it raised."""
    values: list[int] = []
    try:
        for value in raise_at_three_subtask.map(range(6), [kind] * 6, [log] * 6, chunksize=6):
            values.append(value)  # noqa: PERF402 - what came before the error
    except BaseException as exc:
        return values, type(exc).__name__
    return values, ""


# ------------------------------------------------------------------ retries


def _tries(directory: str, key: object) -> int:
    """Log one more run of ``key`` (with this pid); how many runs so far."""
    with open(Path(directory) / "tries.log", "a") as handle:
        handle.write(f"{key} {os.getpid()}\n")
    return sum(1 for line in read_tries(directory) if line[0] == str(key))


def read_tries(directory: str) -> list[tuple[str, int]]:
    """Every (key, pid) that ``_tries`` logged, in order."""
    path = Path(directory) / "tries.log"
    if not path.exists():
        return []
    return [
        (key, int(pid)) for key, pid in (line.split() for line in path.read_text().splitlines())
    ]


@process_task(retries=3)
def die_first(directory: str, deaths: int) -> int:
    """SIGKILL its own worker on its first ``deaths`` runs; then its pid."""
    if _tries(directory, "call") <= deaths:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@process_task(retries=1)
def raise_counted(directory: str) -> int:
    """Raise every time: a task that raised is never retried."""
    _tries(directory, "call")
    raise ValueError("an answer, not a fault")


@process_task
def die_on_item(x: int, directory: str, bad: int, deaths: int) -> int:
    """For a map: item ``bad`` SIGKILLs its worker on its first ``deaths``
    runs; every item logs each run."""
    if _tries(directory, x) <= deaths and x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


@process_task(timeout=0.5, retries=2)
def stuck_first(directory: str, stuck: int) -> int:
    """Hang past its timeout on its first ``stuck`` runs; then its pid."""
    if _tries(directory, "call") <= stuck:
        time.sleep(60)
    return os.getpid()


@process_task
def soak_logged(x: int, seconds: float, directory: str) -> int:
    """The soak's task, logging each run that completed (worker side)."""
    time.sleep(seconds)
    value = sum(range(x % 1000)) + x
    with open(Path(directory) / "done.log", "a") as handle:
        handle.write(f"{x} {os.getpid()}\n")
    return value


def call_variant(task: Any, x: int) -> int:
    """In a worker: call a task (an ``options()`` variant) handed over as an
    argument; it runs inline here."""
    result: int = task(x, 0.0).result(timeout=30)
    return result


class Counter:
    """Decorated methods, for ``options()`` on methods."""

    def __init__(self, k: int) -> None:
        self.k = k

    @process_task(retries=1)
    def times(self, x: int) -> int:
        """``k * x``."""
        return self.k * x

    @classmethod
    @process_task
    def plus_one(cls, x: int) -> int:
        """``x + 1``."""
        return x + 1

    @staticmethod
    @process_task
    def plus_two(x: int) -> int:
        """``x + 2``."""
        return x + 2


@process_task(timeout=1.0)
def fork_then_hang(grandchild_seconds: float) -> None:
    """Forks a grandchild that keeps the worker's pipe open after the worker
    is killed for its timeout, then hangs."""
    if os.fork() == 0:
        time.sleep(grandchild_seconds)
        os._exit(0)
    time.sleep(3600)
