"""Task functions the Dask tests send to Dask workers (importable there)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from nestpool import _routing, _subtask_pool, gather, process_task, thread_subtask


@thread_subtask
def where_subtask() -> dict[str, Any]:
    """Where a subtask ran: pid, thread, and the process's persistent pool."""
    pool = _subtask_pool.this_process_subtask_pool(None)
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "ident": threading.get_ident(),
        "pool": id(pool),
        "pool_threads": pool.thread_idents(),
    }


@process_task
def where_task() -> dict[str, Any]:
    """Where a process task ran, where its subtasks and nested task ran."""
    inner = inline_task()
    subs = gather([where_subtask() for _ in range(4)])
    return {
        "pid": os.getpid(),
        "in_worker": _routing.in_worker(),
        "thread": threading.current_thread().name,
        "ident": threading.get_ident(),
        "inner_done_at_return": inner.done(),
        "inner_pid": inner.result(),
        "subs": subs,
    }


@process_task
def inline_task() -> int:
    """Called from a process task: must run inline there."""
    return os.getpid()


@process_task
def add(a: int, b: int = 0) -> int:
    """A trivial process task."""
    return a + b


@thread_subtask
def double(x: int) -> int:
    """A trivial subtask."""
    return 2 * x


@thread_subtask
def nested_subtask(depth: int) -> int:
    """A subtask that waits on a subtask, ``depth`` levels deep."""
    if depth == 0:
        return 1
    return 1 + sum(gather([nested_subtask(depth - 1), nested_subtask(depth - 1)]))


@process_task
def deep(depth: int) -> int:
    """A process task that fans out nested subtasks and waits on them."""
    return nested_subtask(depth).result() + sum(double.map(range(10)))


class TaskFailedError(Exception):
    """A user exception with state in args."""


@thread_subtask
def failing_subtask(message: str) -> None:
    raise TaskFailedError(message)


@process_task
def fail(message: str) -> None:
    """Raises a user exception from a subtask."""
    failing_subtask(message).result()


@process_task
def unpicklable_result() -> Any:
    return threading.Lock()


@process_task
def kill_self(marker: str | None = None) -> str:
    """Kill this Dask worker process, or only the first time when ``marker``
    names a file (created on the first attempt)."""
    if marker is not None:
        path = Path(marker)
        if path.exists():
            return "rerun"
        path.touch()
    os.kill(os.getpid(), 9)
    time.sleep(60)
    return "unreachable"


@process_task
def sleeper(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


@process_task(timeout=0.5)
def timed(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@process_task
def block_until(path: str, started: str) -> str:
    """Record the start, then wait for ``path`` to exist (cross-process sync)."""
    Path(started).touch()
    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


@process_task
def current_key(x: int) -> str:
    """The Dask key of the task running this call (a chunk shares one)."""
    import distributed

    return str(distributed.get_worker().get_current_task())


def plain_dask_task() -> dict[str, Any]:
    """A plain function run with client.submit (not through nestpool)."""
    return {"in_worker": _routing.in_worker(), "sub": where_subtask().result()}


class UnpicklableError(Exception):
    """An exception that holds a lock: it cannot travel back as itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


@process_task
def fail_unpicklably(message: str) -> None:
    """Raise an exception that cannot be pickled, from a Dask worker."""
    raise UnpicklableError(message)


@thread_subtask
async def where_async_subtask() -> dict[str, Any]:
    """Where an async subtask ran: pid, thread, and the running loop."""
    await asyncio.sleep(0.01)
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "ident": threading.get_ident(),
        "loop": id(asyncio.get_running_loop()),
    }


@process_task
def where_async() -> dict[str, Any]:
    """Where a process task ran on Dask, and where its async subtasks ran."""
    import distributed

    dask_loop = distributed.get_worker().loop.asyncio_loop
    return {
        "pid": os.getpid(),
        "dask_loop": id(dask_loop),
        "dask_loop_thread": getattr(dask_loop, "_thread_id", None),
        "subs": gather([where_async_subtask() for _ in range(4)]),
    }
