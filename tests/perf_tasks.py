"""Task functions for the chunk wire-format tests (importable by every worker)."""

from __future__ import annotations

import os
import signal
import tempfile
import threading

from nestpool import process_task


def die(marker: str) -> None:
    """SIGKILL this worker: every time if ``marker`` ends in ".always" (with a
    line per run in it), else the first time only (creating it)."""
    if marker.endswith(".always"):
        with open(marker, "a") as runs:
            runs.write("run\n")
        os.kill(os.getpid(), signal.SIGKILL)
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)


def runs_of(marker: str) -> int:
    """How many times a ".always" marker's item ran (``die``)."""
    with open(marker) as runs:
        return len(runs.readlines())


@process_task
def chunk_item(x: int, kill_at: int = -1, marker: str = "") -> object:
    """x * 2; raises for x % 7 == 3; an unpicklable result for x % 11 == 5;
    SIGKILLs its worker at ``x == kill_at`` (``die(marker)``)."""
    if x == kill_at:
        die(marker)
    if x % 7 == 3:
        raise ValueError(f"bad {x}")
    if x % 11 == 5:
        return threading.Lock()
    return x * 2


@process_task
def unary_item(x: int | str) -> object:
    """x * 2 for an int; for a str (a marker path), SIGKILL the worker
    (``die(x)``), and return the str after."""
    if isinstance(x, str):
        die(x)
        return x
    return x * 2


@process_task
def slow_item(x: int | str) -> object:
    """``unary_item`` after a 2 ms sleep: a chunk of these is flushed in parts."""
    import time

    time.sleep(0.002)
    return unary_item.sync(x)


#: range_item kills its worker at items past this whose offset ends in 3000
KILL_BASE = 10**12


@process_task
def range_item(x: int) -> int:
    """x * 2; at an item ``KILL_BASE + k * 10_000 + 3000`` (a test's own k),
    SIGKILL the worker every time (``die``, a marker file named after the item)."""
    if x >= KILL_BASE and (x - KILL_BASE) % 10_000 == 3000:
        die(os.path.join(tempfile.gettempdir(), f"nestpool-range-kill-{x}.always"))
    return x * 2


@process_task
def echo_bytes(data: bytes) -> bytes:
    """Its argument back (results larger than one read of the pipe)."""
    return data
