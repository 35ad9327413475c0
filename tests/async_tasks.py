"""Async subtasks and the process tasks that call them (importable by workers)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from nestpool import gather, process_task, thread_subtask


class Boom(Exception):
    """Raised by ``explode`` (importable, so it pickles by reference)."""


@thread_subtask
async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@thread_subtask
async def where() -> dict[str, Any]:
    """Where an async subtask ran: pid, thread, and the running loop."""
    await asyncio.sleep(0)
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "ident": threading.get_ident(),
        "loop": id(asyncio.get_running_loop()),
    }


@thread_subtask
async def nap(seconds: float, value: Any = None) -> Any:
    await asyncio.sleep(seconds)
    return value


@thread_subtask
async def explode(message: str) -> None:
    await asyncio.sleep(0)
    _raise_boom(message)


def _raise_boom(message: str) -> None:
    raise Boom(message)


@thread_subtask
def thread_where() -> dict[str, Any]:
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


@thread_subtask
async def nested_double(x: int) -> int:
    """An async subtask that awaits another async subtask and a thread subtask."""
    doubled = await asyncio.wrap_future(double(x))
    await asyncio.wrap_future(thread_where())
    return doubled + 1


@thread_subtask
async def thread_subtask_from_loop() -> str:
    """Where a thread subtask called by a coroutine on the loop ran."""
    where_thread = await asyncio.wrap_future(thread_where())
    return str(where_thread["thread"])


@thread_subtask
async def result_on_loop() -> str:
    """Calls .result() on a pending async subtask's future from the loop."""
    future = nap(0.05, "late")
    try:
        future.result()
    except RuntimeError as exc:
        message = str(exc)
    else:  # pragma: no cover - the test fails on it
        message = "no error"
    assert await asyncio.wrap_future(future) == "late"
    return message


@thread_subtask
async def gather_on_loop() -> str:
    try:
        gather([nap(0.05, 1), nap(0.05, 2)])
    except RuntimeError as exc:
        return str(exc)
    return "no error"  # pragma: no cover


@thread_subtask
async def map_on_loop() -> str:
    try:
        list(double.map(range(3)))
    except RuntimeError as exc:
        return str(exc)
    return "no error"  # pragma: no cover


@thread_subtask
async def amap_on_loop(n: int) -> list[int]:
    return [v async for v in double.amap(range(n))]


@thread_subtask
async def wait_then_note_cancel(started: threading.Event, cancelled: threading.Event) -> str:
    """Sets ``started``, then sleeps; sets ``cancelled`` when it is cancelled."""
    started.set()
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return "not cancelled"


class Gauge:
    """How many coroutines run at once, and the most seen (on the loop's thread)."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0


_gauge = Gauge()


@thread_subtask
async def counted(x: int, seconds: float) -> int:
    _gauge.now += 1
    _gauge.most = max(_gauge.most, _gauge.now)
    try:
        await asyncio.sleep(seconds)
    finally:
        _gauge.now -= 1
    return x


@process_task
def most_in_flight(n: int, buffersize: int | None, seconds: float) -> tuple[list[int], int]:
    _gauge.most = 0
    values = list(counted.map(range(n), [seconds] * n, buffersize=buffersize))
    return values, _gauge.most


@process_task
def where_from_task(calls: int) -> dict[str, Any]:
    """Where this task ran, and where its async subtasks ran."""
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "subs": gather([where() for _ in range(calls)]),
    }


@process_task
def timed_naps(n: int, seconds: float) -> float:
    started = time.monotonic()
    values = list(nap.map([seconds] * n, range(n)))
    assert values == list(range(n))
    return time.monotonic() - started


@process_task
def mixed(n: int) -> dict[str, Any]:
    """Thread subtasks and async subtasks from one process task."""
    async_futures = [where() for _ in range(n)]
    thread_futures = [thread_where() for _ in range(n)]
    return {
        "pid": os.getpid(),
        "async": gather(async_futures),
        "threads": gather(thread_futures),
        "nested": list(nested_double.map(range(n))),
        "unordered": sorted(double.map(range(n), ordered=False)),
    }


@process_task
def cancel_in_worker() -> tuple[bool, bool]:
    """Cancels a running async subtask's future in the worker: did cancel()
    succeed, and did the coroutine see its CancelledError?"""
    started, cancelled = threading.Event(), threading.Event()
    future = wait_then_note_cancel(started, cancelled)
    assert started.wait(10)
    done = future.cancel()
    return done, cancelled.wait(10)


@process_task
def close_map_in_worker(n: int) -> tuple[int, int]:
    """Closes an async map early: how many coroutines had started, and how
    many of those saw their CancelledError."""
    started = [threading.Event() for _ in range(n)]
    cancelled = [threading.Event() for _ in range(n)]
    values = wait_then_note_cancel.map(started, cancelled)
    assert all(event.wait(10) for event in started)
    values.close()
    return sum(e.is_set() for e in started), sum(e.wait(10) for e in cancelled)


@process_task
def raise_in_worker() -> None:
    explode("in a worker").result()


@thread_subtask
async def note_after(seconds: float, path: str) -> str:
    await asyncio.sleep(seconds)
    with open(path, "a") as note:
        note.write(f"{os.getpid()}\n")
    return "noted"


@process_task
def fire_and_forget(path: str) -> int:
    """Calls an async subtask and returns without waiting for it."""
    note_after(0.3, path)
    return os.getpid()
