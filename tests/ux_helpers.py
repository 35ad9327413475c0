"""Task functions for the progress, asyncio and logging tests (importable by
workers under every start method)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from nestpool import process_task, thread_subtask

#: set by the tests; the gated subtask waits on it (parent-side threads only)
GATE = threading.Event()
#: set by the gated subtask when it has started
STARTED = threading.Event()


@process_task
def cube(x: int) -> int:
    """A trivial process task."""
    return x * x * x


@thread_subtask
def triple(x: int) -> int:
    """A trivial subtask."""
    return 3 * x


@process_task
def wait_for_file(path: str, value: int) -> int:
    """Block (in a worker) until ``path`` exists, then return ``value``."""
    gate = Path(path)
    deadline = time.monotonic() + 60
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return value


@thread_subtask
def wait_for_gate(value: int) -> int:
    """Block until ``GATE`` is set, then return ``value``."""
    STARTED.set()
    if not GATE.wait(60):
        raise TimeoutError("GATE was never set")
    return value


@process_task
def fail_on(x: int, bad: int) -> int:
    """Raise ``ValueError`` for ``x == bad``."""
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


@process_task
def exit_worker(code: int) -> None:
    """End the worker process abruptly."""
    os._exit(code)


@process_task(timeout=0.5)
def sleep_past_timeout(seconds: float) -> None:
    """Sleep past the 0.5 s timeout."""
    time.sleep(seconds)


@process_task
def async_sum_of_triples(n: int) -> int:
    """In a worker: an asyncio program that consumes a subtask ``amap``."""
    import asyncio

    async def main() -> int:
        return sum([v async for v in triple.amap(range(n))])

    return asyncio.run(main())


class Scaler:
    """A class with decorated methods (found by reference in workers)."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    @process_task
    def scale(self, x: int) -> int:
        """A process-task method."""
        return self.factor * x

    @thread_subtask
    def shift(self, x: int) -> int:
        """A subtask method."""
        return self.factor + x


@process_task
def meet(directory: str, x: int) -> int:
    """Record this worker's pid in ``directory`` and wait until two workers
    have (``directory=""``: return at once, a warm-up call)."""
    if not directory:
        return x
    Path(directory, str(os.getpid())).touch()
    deadline = time.monotonic() + 20
    while len(os.listdir(directory)) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("only one worker ran this map's items")
        time.sleep(0.01)
    return x
