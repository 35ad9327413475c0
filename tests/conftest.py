"""Shared fixtures: start methods, and the after-each-test leak checks.

Every test that starts processes or threads runs under pytest-timeout (a global
default in pyproject.toml, tighter marks where useful); faulthandler dumps all
stacks before it fires, so a hang shows where it hung.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psutil
import pytest

if TYPE_CHECKING:
    from nestpool import Pool

START_METHODS = ["fork", "forkserver", "spawn"]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return it."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def record_started_workers(pool: Pool) -> list[int]:
    """The pids of the workers ``pool`` starts from now on, in order (a list
    that grows as they start). Call it before the pool's first process task,
    so that no worker has started yet."""
    from tests.helpers import local_engine

    workers = local_engine(pool).get_dispatcher()._workers
    assert not workers.handles(), "call it before the first process task"
    started: list[int] = []
    start = workers.start

    def recording() -> Any:
        worker = start()
        started.append(worker.pid)
        return worker

    workers.start = recording  # type: ignore[method-assign]
    return started


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Run the test under fork, forkserver and spawn."""
    return str(request.param)


def _helper_pids() -> set[int]:
    """multiprocessing's own long-lived helpers (the forkserver, the resource
    tracker): they outlive pools by design; they are not nestpool's workers.

    Known by pid, not by command line: a worker forked by the forkserver has
    the forkserver's command line, so a match on it would pass the worker for
    a helper (the checks would never see a forkserver worker), except for the
    moment its command line reads empty as it exits (a flaky failure)."""
    pids = set()
    forkserver = sys.modules.get("multiprocessing.forkserver")
    server = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if server:
        pids.add(server)
    tracker_module = sys.modules.get("multiprocessing.resource_tracker")
    tracker = getattr(getattr(tracker_module, "_resource_tracker", None), "_pid", None)
    if tracker:
        pids.add(tracker)
    return pids


def _is_helper(process: psutil.Process) -> bool:
    return process.pid in _helper_pids()


def _stray_children() -> list[psutil.Process]:
    me = psutil.Process()
    strays = []
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                child.wait(0)
                continue
        except psutil.Error:
            continue
        if not _is_helper(child):
            strays.append(child)
    return strays


def _stray_threads() -> list[threading.Thread]:
    # The process's event loop for async subtasks is kept for the process's
    # life by design (made on first use): not a leftover.
    from nestpool import _subtask_loop

    loop = _subtask_loop._this_process_loop
    kept = None if loop is None else loop.thread
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("nestpool") and t.is_alive() and t is not kept
    ]


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: no worker process, no nestpool thread left behind."""
    yield
    if request.node.get_closest_marker("allow_leftovers"):
        return
    gc.collect()
    assert wait_until(lambda: not _stray_children(), 10), (
        f"child processes left behind: {_stray_children()}"
    )
    # Subtask threads of a pool shut down with wait=False may still be ending.
    assert wait_until(lambda: not _stray_threads(), 10), f"threads left behind: {_stray_threads()}"
