"""Tasks for the compute-slot tests (importable by every kind of worker)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from nestpool import process_task, thread_subtask


@thread_subtask
def io_wait(seconds: float) -> float:
    """An IO wait on the worker's thread pool."""
    time.sleep(seconds)
    return seconds


def _record(directory: str, line: str) -> None:
    # One write of a short line to a file opened for appending: atomic
    # between processes.
    fd = os.open(Path(directory) / "phases", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@process_task
def io_then_own_code(directory: str, index: int, own_seconds: float) -> int:
    """Wait on a subtask, then spend ``own_seconds`` in the task's own code
    (a compute phase: it holds a compute slot), recording when that phase ran."""
    io_wait(0.02).result()
    started = time.monotonic()
    time.sleep(own_seconds)  # stands for CPU work: the slot is held throughout
    _record(directory, f"{index} {started!r} {time.monotonic()!r}")
    return index


@process_task
def io_then_meet(directory: str, name: str, parties: int) -> int:
    """Wait on a subtask, then wait (in the task's own code, holding a compute
    slot) until ``parties`` tasks have arrived here."""
    io_wait(0.02).result()
    Path(directory, f"arrived-{name}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path(directory).glob("arrived-*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("the other tasks never arrived")
        time.sleep(0.005)
    return parties


@process_task
def io_then_hold(directory: str) -> int:
    """Wait on a subtask, then say so (with this worker's pid) and hold a
    compute slot until the file ``release`` exists."""
    io_wait(0.02).result()
    Path(directory, f"holding-{os.getpid()}").touch()
    while not Path(directory, "release").exists():
        time.sleep(0.005)
    return os.getpid()


def overlap(directory: str) -> int:
    """The most compute phases recorded in ``directory`` that ran at once."""
    events: list[tuple[float, int]] = []
    for line in Path(directory, "phases").read_text().splitlines():
        _, start, end = line.split()
        events += [(float(start), 1), (float(end), -1)]
    running = most = 0
    for _, change in sorted(events):  # an end before a start at the same instant
        running += change
        most = max(most, running)
    return most
