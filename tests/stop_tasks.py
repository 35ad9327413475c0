"""Task functions for the stop tests (importable by workers under every start
method).

A task under test says "started" with a ready file holding its worker's pid
(``fault_tasks.ready``), and leaves a side effect only if it runs to its end:
a ``<name>.done`` file. A stopped task must never leave one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from nestpool import process_task
from tests.fault_tasks import log_run, ready


def _wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name!r} never appeared")
        time.sleep(0.01)


@process_task
def gated(directory: str, name: str) -> int:
    """Say started, wait for the file ``<name>.gate``, then leave
    ``<name>.done`` (the side effect a stopped task never reaches)."""
    ready(directory, name)
    _wait_for(Path(directory) / f"{name}.gate")
    (Path(directory) / f"{name}.done").write_text(str(os.getpid()))
    return os.getpid()


@process_task(stop_on_cancel=True)
def gated_stoppable(directory: str, name: str) -> int:
    """``gated``, whose ``cancel()`` stops it while it runs."""
    ready(directory, name)
    _wait_for(Path(directory) / f"{name}.gate")
    (Path(directory) / f"{name}.done").write_text(str(os.getpid()))
    return os.getpid()


@process_task(retries=3)
def map_item(x: int, held: int, directory: str) -> int:
    """A map item: log the run; item ``held`` says started and waits for a
    gate that never opens (it is stopped)."""
    log_run(directory, x)
    if x == held:
        ready(directory, "held")
        _wait_for(Path(directory) / "held.gate")
        (Path(directory) / "held.done").write_text(str(os.getpid()))
    time.sleep(0.02)  # longer than the worker's flush period: each result is sent
    return x * 10
