"""Task functions the tests send to workers (importable under every start method)."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from nestpool import Pool, _routing, _subtask_pool, process_task, thread_subtask

if TYPE_CHECKING:
    from nestpool._local import LocalBackend


@thread_subtask
def double(x: int) -> int:
    """A trivial subtask."""
    return 2 * x


@thread_subtask
def where_subtask() -> tuple[int, int, str]:
    """Where did the subtask run: pid, thread ident, thread name."""
    thread = threading.current_thread()
    return os.getpid(), threading.get_ident(), thread.name


@process_task
def where_task() -> tuple[int, bool]:
    """Where did the process task run: pid, and whether inside a worker."""
    return os.getpid(), _routing.in_worker()


@process_task
def add(a: int, b: int = 0) -> int:
    """A trivial process task."""
    return a + b


@process_task
def square(x: int) -> int:
    """A trivial process task of one argument."""
    return x * x


@process_task
def fan_out(xs: list[int]) -> int:
    """A process task that maps a subtask over its input."""
    return sum(double.map(xs))


@process_task
def nested_where() -> dict[str, Any]:
    """From inside a worker: where do a process task and a subtask run?"""
    inner_future = where_task()
    sub_future = where_subtask()
    return {
        "pid": os.getpid(),
        "inner_done_at_return": inner_future.done(),
        "inner": inner_future.result(),
        "sub": sub_future.result(),
    }


@process_task
def subtask_pool_identity(n: int) -> tuple[int, int, list[int]]:
    """The id of this worker's subtask pool and the idents of threads used."""
    idents = [f.result()[1] for f in [where_subtask() for _ in range(n)]]
    pool = _subtask_pool.this_process_subtask_pool(None)
    return os.getpid(), id(pool), idents


@process_task
def sleep_then(seconds: float, value: Any) -> Any:
    """Sleep, then return ``value``."""
    time.sleep(seconds)
    return value


@process_task
def raise_value_error(message: str) -> None:
    """Raise a ValueError in the worker."""
    raise ValueError(message)


@process_task
def kill_self_after_ready(ready_path: str) -> None:
    """Write a file to say 'started', then wait to be killed."""
    with open(ready_path, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(60)


@process_task
def wait_on_barrier(barrier: Any) -> int:
    """Wait on a multiprocessing barrier (proves concurrency); return the pid."""
    barrier.wait(timeout=20)
    return os.getpid()


@process_task
def getpid_task(_: object = None) -> int:
    """Return the worker's pid."""
    return os.getpid()


@thread_subtask
def meet(barrier: threading.Barrier) -> str:
    """Wait at a thread barrier; return the thread's name."""
    barrier.wait(timeout=20)
    return threading.current_thread().name


@process_task
def concurrent_subtasks(n: int) -> list[str]:
    """Start n subtasks that must all run at once to pass their barrier."""
    barrier = threading.Barrier(n)
    futures = [meet(barrier) for _ in range(n)]
    return [f.result() for f in futures]


def local_engine(pool: Pool) -> LocalBackend:
    """The local process engine behind ``pool``, for tests that look inside it."""
    from nestpool._local import LocalBackend

    backend = pool._backend
    assert isinstance(backend, LocalBackend)
    return backend
