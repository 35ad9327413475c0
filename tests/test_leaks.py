"""Nothing leaks: after a pool closes, normally or after faults, no child
process, zombie, thread, file descriptor or semaphore it created remains, and
the resource tracker has nothing to warn about.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from nestpool import InitializerError, Pool, TaskTimeoutError, WorkerDiedError
from tests import fault_tasks as ft
from tests.conftest import START_METHODS, _helper_pids, wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent


def _fds() -> dict[int, str]:
    """This process's open file descriptors and what each points to."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory's own descriptor, closed by now
            pass
    return fds


def _children() -> list[psutil.Process]:
    """Child processes (forkserver workers included) other than
    multiprocessing's long-lived helpers; a zombie is a leak too."""
    helpers = _helper_pids()
    found = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in helpers:
            continue
        try:
            child.status()
        except psutil.NoSuchProcess:
            continue  # gone (and reaped) while we looked
        except psutil.Error:
            pass
        found.append(child)
    return found


def _normal_work(pool: Pool, tmp: Path) -> None:
    assert ft.square(3).result(timeout=30) == 9
    assert sum(ft.square.map(range(100))) == sum(i * i for i in range(100))


def _faults(pool: Pool, tmp: Path) -> None:
    # A SIGKILL, an exit, a timeout, an unpicklable result: the pool goes on.
    future = ft.hold(str(tmp), "victim")
    assert wait_until(lambda: ft.read_ready(str(tmp), "victim") is not None, 30)
    pid = ft.read_ready(str(tmp), "victim")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerDiedError):
        future.result(timeout=30)
    with pytest.raises(WorkerDiedError):
        ft.exit_now(3, str(tmp)).result(timeout=30)
    with pytest.raises(TaskTimeoutError):
        ft.sleep_timed(30).result(timeout=30)
    assert ft.make_result("lock").exception(timeout=30) is not None
    assert ft.square(4).result(timeout=30) == 16


SCENARIOS: dict[str, tuple[dict[str, object], Callable[[Pool, Path], None]]] = {
    "normal": ({"processes": 2, "threads": 2}, _normal_work),
    "faults": ({"processes": 2, "threads": 2, "tasks_per_process": 2}, _faults),
    "retiring": ({"processes": 2, "max_tasks_per_child": 2}, _normal_work),
}


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    # The forkserver and the resource tracker are started once per process and
    # kept by design (with their pipes): start them before anything is counted.
    for method in START_METHODS:
        with Pool(processes=1, start_method=method):
            assert ft.square(2).result(timeout=30) == 4


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_closed_pool_leaves_no_fd_thread_or_process(
    start_method: str, scenario: str, tmp_path: Path
) -> None:
    options, work = SCENARIOS[scenario]
    gc.collect()
    fds_before = _fds()
    threads_before = set(threading.enumerate())
    with Pool(start_method=start_method, **options) as pool:  # type: ignore[arg-type]
        work(pool, tmp_path)
    del pool
    gc.collect()
    assert _children() == []
    assert set(threading.enumerate()) == threads_before
    fds_after = _fds()
    assert fds_after == fds_before, {
        "opened": {fd: fds_after[fd] for fd in set(fds_after) - set(fds_before)},
        "closed": {fd: fds_before[fd] for fd in set(fds_before) - set(fds_after)},
    }


def test_a_broken_pool_leaves_nothing(start_method: str) -> None:
    gc.collect()
    fds_before = _fds()
    threads_before = set(threading.enumerate())
    with (
        Pool(
            processes=2,
            start_method=start_method,
            initializer=ft.failing_initializer,
            initargs=("broken",),
        ) as pool,
        pytest.raises(InitializerError),
    ):
        ft.square(1).result(timeout=30)
    del pool
    gc.collect()
    assert _children() == []
    assert set(threading.enumerate()) == threads_before
    assert _fds() == fds_before


def test_a_terminated_pool_leaves_nothing(start_method: str, tmp_path: Path) -> None:
    gc.collect()
    fds_before = _fds()
    pool = Pool(processes=2, start_method=start_method)
    futures = [ft.hold(str(tmp_path), f"t{i}") for i in range(2)]
    assert wait_until(lambda: len(list(tmp_path.iterdir())) == 2, 30)
    pool.terminate()
    for future in futures:
        with pytest.raises(WorkerDiedError, match="terminated"):
            future.result(timeout=30)
    del pool
    gc.collect()
    assert _children() == []
    assert _fds() == fds_before


_TRACKER_SCRIPT = """
import multiprocessing, os, signal, sys, tempfile, time
from nestpool import Pool, WorkerDiedError
from tests import fault_tasks as ft

if __name__ == "__main__":
    # Name this process's semaphores apart: /dev/shm is the whole machine's.
    multiprocessing.current_process()._config["semprefix"] = f"/mp-nestpool-leaks-{os.getpid()}"
    print(os.getpid(), flush=True)
    for method in ("fork", "forkserver", "spawn"):
        with tempfile.TemporaryDirectory() as tmp:
            with Pool(processes=2, start_method=method, max_tasks_per_child=3) as pool:
                assert sum(ft.square.map(range(50), chunksize=5)) == sum(i * i for i in range(50))
                try:
                    ft.exit_now(3, tmp).result(timeout=30)
                except WorkerDiedError:
                    pass
                # A worker busy with a task: not one that max_tasks_per_child
                # may have retired (and reaped) before the kill, whose pid
                # could even belong to another process by then.
                victim = ft.hold(tmp, "victim")
                while ft.read_ready(tmp, "victim") is None:
                    time.sleep(0.01)
                os.kill(ft.read_ready(tmp, "victim"), signal.SIGKILL)
                try:
                    victim.result(timeout=30)
                except WorkerDiedError:
                    pass
                else:
                    raise AssertionError("the killed worker's task did not fail")
                assert ft.square(5).result(timeout=30) == 25
    print("done", flush=True)
"""


def test_the_resource_tracker_has_nothing_to_warn_about() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(_TRACKER_SCRIPT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert result.returncode == 0, result.stderr
    pid, done = result.stdout.split()
    assert done == "done"
    for word in ("resource_tracker", "leaked", "Warning", "Traceback"):
        assert word not in result.stderr, result.stderr
    if os.path.isdir("/dev/shm"):
        # Only the script's own names: other processes on the machine create
        # and remove theirs meanwhile (a machine-wide diff would fail for them).
        mine = (f"sem.mp-nestpool-leaks-{pid}", f"pym-{pid}-")
        assert not [name for name in os.listdir("/dev/shm") if name.startswith(mine)]
