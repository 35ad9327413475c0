"""Task functions for the core tests (pool options, executor API, engine,
identity): importable by the workers under every start method."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any

from nestpool import ProcessTask, _routing, _subtask_pool, process_task, thread_subtask

#: set in each worker by ``set_marker`` (the pool's initializer)
MARKER: Any = None


def set_marker(*values: Any) -> None:
    """An initializer: store its arguments and the pid it ran in."""
    global MARKER
    MARKER = (values, os.getpid())


@process_task
def read_marker() -> tuple[Any, int]:
    """What the initializer stored in this worker, and this worker's pid."""
    return MARKER, os.getpid()


@process_task
def marker_at_barrier(barrier: Any) -> tuple[Any, int]:
    """``read_marker``, once as many tasks as the barrier has parties are running."""
    barrier.wait(timeout=20)
    return MARKER, os.getpid()


def _wait_for(path: Path, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def _write_atomically(path: Path, text: str) -> None:
    # A reader polling for the file must never see it empty: write, then rename.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


@process_task
def hold(ready: str, release: str, value: Any) -> Any:
    """Write this worker's pid to ``ready``, wait until ``release`` exists,
    then return ``value`` (a task that is surely in flight while it waits)."""
    _write_atomically(Path(ready), str(os.getpid()))
    _wait_for(Path(release))
    return value


def plain_hold(ready: str, release: str, value: Any) -> Any:
    """``hold`` as a plain function (for ``Pool.submit``)."""
    return hold.sync(ready, release, value)


@process_task
def pid_after(seconds: float) -> int:
    """Sleep a moment, then return the worker's pid."""
    time.sleep(seconds)
    return os.getpid()


@process_task
def meet_in_process(barrier: Any) -> tuple[int, int]:
    """Wait at a multiprocessing barrier; return (pid, runner thread ident)."""
    barrier.wait(timeout=20)
    return os.getpid(), threading.get_ident()


@thread_subtask
def where_native() -> tuple[int, str]:
    """The native thread id and name of the thread that ran this subtask."""
    time.sleep(0.001)
    thread = threading.current_thread()
    return threading.get_native_id(), thread.name


@process_task
def subtask_threads(n: int) -> dict[str, Any]:
    """Run ``n`` subtasks; report the worker's subtask pool and where they ran."""
    futures = [where_native() for _ in range(n)]
    wait(futures)
    pool = _subtask_pool.this_process_subtask_pool(None)
    return {
        "pid": os.getpid(),
        "pool_id": id(pool),
        "pool_max": pool.max_workers,
        "runner": threading.get_native_id(),
        "ran_on": [f.result() for f in futures],
    }


@process_task
def call_task(task: ProcessTask[[int], int], x: int) -> tuple[int, bool, int]:
    """Call a decorated task received as an argument (it runs inline here)."""
    future = task(x)
    return future.result(), _routing.in_worker(), os.getpid()


@process_task
def double_it(x: int) -> int:
    """A trivial process task."""
    return 2 * x


def plain_triple(x: int) -> int:
    """A plain module-level function (importable: goes by reference)."""
    return 3 * x


def keywords(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return what it was called with."""
    return args, kwargs


class Scaler:
    """Decorated methods of every kind, for the identity tests."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    @process_task
    def scale(self, x: int) -> tuple[int, int]:
        """Multiply by the instance's factor."""
        return self.factor * x, os.getpid()

    @staticmethod
    @process_task
    def static_outer(x: int) -> tuple[int, int]:
        """``@staticmethod`` above ``@process_task``."""
        return 10 * x, os.getpid()

    @process_task
    @staticmethod
    def static_inner(x: int) -> tuple[int, int]:
        """``@process_task`` above ``@staticmethod``."""
        return 100 * x, os.getpid()

    @classmethod
    @process_task
    def class_outer(cls, x: int) -> tuple[str, int, int]:
        """``@classmethod`` above ``@process_task``."""
        return cls.__name__, x, os.getpid()

    @process_task
    @classmethod
    def class_inner(cls, x: int) -> tuple[str, int, int]:
        """``@process_task`` above ``@classmethod``."""
        return cls.__name__, x, os.getpid()

    @thread_subtask
    def sub_scale(self, x: int) -> tuple[int, str]:
        """A decorated subtask method."""
        return self.factor * x, threading.current_thread().name


class SubScaler(Scaler):
    """A subclass, to see which class a classmethod task gets."""


@process_task(timeout=float("inf"))
def no_real_limit(seconds: float) -> int:
    """A process task whose timeout never fires."""
    time.sleep(seconds)
    return os.getpid()


@process_task(timeout=1e12)
def limit_in_centuries(seconds: float) -> int:
    """A process task with a timeout too large for poll()."""
    time.sleep(seconds)
    return os.getpid()


class CustomBaseError(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


def _raise(kind: str) -> None:
    if kind == "value":
        raise ValueError("value")
    if kind == "exit":
        raise SystemExit(3)
    if kind == "base":
        raise CustomBaseError("base")
    if kind == "generator-exit":
        raise GeneratorExit
    raise AssertionError(kind)


@process_task
def raise_kind(kind: str) -> None:
    """Raise the exception named by ``kind``."""
    _raise(kind)


@thread_subtask
def subtask_raise_kind(kind: str) -> None:
    """Raise the exception named by ``kind`` (a subtask)."""
    _raise(kind)


KINDS = ("value", "exit", "base", "generator-exit")


@process_task
def outcomes_in_worker() -> dict[str, Any]:
    """In a worker: what calling (and waiting on) failing tasks gives."""
    report: dict[str, Any] = {}
    for kind in KINDS:
        # a process task called here runs inline: its exception is in the future
        future = raise_kind(kind)
        report[f"task-{kind}"] = (future.done(), type(future.exception()).__name__)
        # a subtask waited on by this runner thread before any pool thread
        # started it runs here, and must still end up in its future
        sub = subtask_raise_kind(kind)
        try:
            report[f"subtask-{kind}"] = type(sub.exception(timeout=30)).__name__
        except BaseException as exc:
            report[f"subtask-{kind}"] = f"raised {type(exc).__name__}"
        waited = subtask_raise_kind(kind)
        try:
            wait([waited], timeout=30)
            report[f"wait-{kind}"] = type(waited.exception()).__name__
        except BaseException as exc:
            report[f"wait-{kind}"] = f"raised {type(exc).__name__}"
    return report


@thread_subtask
def task_from_subtask() -> dict[str, Any]:
    """Call a process task from a subtask: where does it run?"""
    from tests import helpers

    future = helpers.where_task()
    return {
        "done_at_return": future.done(),
        "where": future.result(),
        "pid": os.getpid(),
        "ident": threading.get_ident(),
        "thread": threading.current_thread().name,
    }


@process_task
def via_subtask() -> dict[str, Any]:
    """A process task whose subtask calls a process task."""
    return task_from_subtask().result(timeout=30)
