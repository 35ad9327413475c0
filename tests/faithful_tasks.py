"""Tasks and objects for tests/test_faithful.py, importable by workers under
every start method.

The same plain functions run on ``Pool`` and on ``ProcessPoolExecutor``, so a
test can compare the two engines. Initializers keep what they are given in
module globals here, as a user's module would; objects that fail to cross the
process boundary raise a ``BaseException`` (``SystemExit``,
``KeyboardInterrupt`` or ``CustomBaseError``) at a chosen crossing.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from types import FrameType
from typing import Any

from nestpool import process_task

# ------------------------------------------------------------- plain tasks


def square(x: int) -> int:
    """A trivial task."""
    return x * x


def pid_after(seconds: float) -> int:
    """Sleep, then return this worker's pid."""
    time.sleep(seconds)
    return os.getpid()


def echo(x: Any) -> Any:
    """Return the argument."""
    return x


@process_task
def echo_task(x: Any) -> Any:
    """Return the argument (a decorated task)."""
    return x


# --------------------------------------- initargs the standard library passes


class _Shared:
    """What ``init_shared`` was given (this worker's handles)."""

    queue: Any = None
    lock: Any = None
    event: Any = None
    value: Any = None
    array: Any = None
    memory: SharedMemory | None = None
    mapping: Any = None


def init_shared(
    queue: Any, lock: Any, event: Any, value: Any, array: Any, memory_name: str, mapping: Any
) -> None:
    """Initializer: keep multiprocessing objects in module globals."""
    _Shared.queue, _Shared.lock, _Shared.event = queue, lock, event
    _Shared.value, _Shared.array, _Shared.mapping = value, array, mapping
    _Shared.memory = SharedMemory(name=memory_name)


def use_shared(i: int, increments: int) -> int:
    """Use every object ``init_shared`` kept: add to the Value under the Lock,
    write the Array and the shared memory, set a key of the manager dict, put
    to the Queue and set the Event."""
    for _ in range(increments):
        with _Shared.lock:
            # not atomic (a read, then a write): only the Lock keeps it exact
            _Shared.value.value += 1
    _Shared.array[i] = i * i
    assert _Shared.memory is not None
    _Shared.memory.buf[i] = i + 1
    _Shared.mapping[f"k{i}"] = i
    _Shared.queue.put(i)
    _Shared.event.set()
    return i


_THREAD_LOCK: Any = None


def init_thread_lock(lock: Any) -> None:
    """Initializer given a ``threading.Lock`` (only fork can pass one)."""
    global _THREAD_LOCK
    _THREAD_LOCK = lock


def use_thread_lock() -> tuple[bool, bool]:
    """Hold the initializer's lock: (locked inside, locked after)."""
    with _THREAD_LOCK:
        inside = bool(_THREAD_LOCK.locked())
    return inside, bool(_THREAD_LOCK.locked())


# ------------------------------------------------ the worker's main thread

_DB: sqlite3.Connection | None = None


def init_sqlite() -> None:
    """Initializer: a sqlite3 connection, bound to the thread that made it."""
    global _DB
    _DB = sqlite3.connect(":memory:")
    _DB.execute("create table t (x integer)")


def sqlite_insert(x: int) -> tuple[int, int]:
    """Use the initializer's connection: (rows, sum) after inserting ``x``."""
    assert _DB is not None
    _DB.execute("insert into t values (?)", (x,))
    rows, total = _DB.execute("select count(*), sum(x) from t").fetchone()
    return int(rows), int(total)


def thread_facts() -> tuple[bool, str]:
    """Is this task on the process's main thread; the thread's name."""
    thread = threading.current_thread()
    return thread is threading.main_thread(), thread.name


def alarm_in_task() -> list[bool]:
    """Install a SIGALRM handler, arm a one-shot timer and wait for the alarm:
    one entry per handler run (whether it ran on the main thread)."""
    fired: list[bool] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        fired.append(threading.current_thread() is threading.main_thread())

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        deadline = time.monotonic() + 10
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return fired


def install_handler() -> str:
    """Try to install a SIGALRM handler (ValueError off the main thread)."""
    previous = signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, previous)
    return "installed"


# -------------------------------------------------------- by value, once


def _record_unpickle(path: str, offset: int) -> UnpickleLog:
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    return UnpickleLog(path, offset)


class UnpickleLog:
    """Appends the unpickling process's pid to ``path`` each time it is rebuilt."""

    def __init__(self, path: str, offset: int) -> None:
        self.path = path
        self.offset = offset

    def __reduce__(self) -> tuple[Any, ...]:
        return _record_unpickle, (self.path, self.offset)


def unpickled_in(path: str) -> list[int]:
    """The pids that rebuilt an ``UnpickleLog`` writing to ``path``, in order."""
    file = Path(path)
    if not file.exists():
        return []
    return [int(line) for line in file.read_text().split()]


# ------------------------------------------- BaseException at each crossing

KINDS = ["SystemExit", "KeyboardInterrupt", "CustomBaseError"]


class CustomBaseError(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


def make_exc(kind: str) -> BaseException:
    """A fresh exception of the kind named."""
    if kind == "SystemExit":
        return SystemExit(3)
    if kind == "KeyboardInterrupt":
        return KeyboardInterrupt()
    if kind == "CustomBaseError":
        return CustomBaseError("raised while crossing")
    raise AssertionError(kind)


def _fail_rebuild(cls: type[Any], kind: str, only_in: int | None) -> Any:
    if only_in is None or os.getpid() == only_in:
        raise make_exc(kind)
    return cls(kind, only_in)


class RaisesOnPickle:
    """Its ``__reduce__`` raises ``kind``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        raise make_exc(self.kind)


class RaisesOnRebuild:
    """Pickles; rebuilding it raises ``kind`` (only in process ``only_in``
    when given, e.g. the parent)."""

    def __init__(self, kind: str, only_in: int | None = None) -> None:
        self.kind = kind
        self.only_in = only_in

    def __reduce__(self) -> tuple[Any, ...]:
        return _fail_rebuild, (RaisesOnRebuild, self.kind, self.only_in)


class ErrorRaisesOnPickle(Exception):
    """An exception whose ``__reduce__`` raises ``kind``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        raise make_exc(self.kind)


class ErrorRaisesOnRebuild(Exception):
    """An exception that pickles; rebuilding it raises ``kind`` (only in
    process ``only_in`` when given)."""

    def __init__(self, kind: str, only_in: int | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.only_in = only_in

    def __reduce__(self) -> tuple[Any, ...]:
        return _fail_rebuild, (ErrorRaisesOnRebuild, self.kind, self.only_in)


def bad_outcome(how: str, kind: str, parent_pid: int) -> Any:
    """Return or raise an object that fails at the crossing ``how`` names."""
    if how == "result pickled in the worker":
        return RaisesOnPickle(kind)
    if how == "result unpickled in the parent":
        return RaisesOnRebuild(kind, only_in=parent_pid)
    if how == "exception pickled in the worker":
        raise ErrorRaisesOnPickle(kind)
    if how == "exception rebuilt in the worker":
        raise ErrorRaisesOnRebuild(kind)
    if how == "exception unpickled in the parent":
        raise ErrorRaisesOnRebuild(kind, only_in=parent_pid)
    raise AssertionError(how)


@process_task
def bad_outcome_task(how: str, kind: str, parent_pid: int) -> Any:
    """``bad_outcome`` as a decorated task."""
    return bad_outcome(how, kind, parent_pid)


@process_task
def chunk_item(x: Any, how: str, kind: str, parent_pid: int, bad: int) -> Any:
    """A map item: item ``bad`` fails at the crossing ``how`` names (unless the
    bad object is the argument itself); the others give ``x * 10``."""
    if x == bad and how.startswith(("result", "exception")):
        return bad_outcome(how, kind, parent_pid)
    return x * 10


# ------------------------------------------------------- no stale references


class Holder:
    """Weakly referenceable; ``size`` bytes of data."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)

    def method(self, extra: int = 0) -> int:
        """Its size, plus ``extra``."""
        return len(self.data) + extra


def size_of(holder: Holder) -> int:
    """The holder's size, as seen in the worker."""
    return len(holder.data)


@process_task
def size_task(holder: Holder) -> int:
    """``size_of`` as a decorated task."""
    return len(holder.data)
