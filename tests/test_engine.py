"""nestpool's own process engine (a channel and a sentinel per worker, so a
death costs only that worker's tasks) and the worker's persistent thread pool,
under fork, forkserver and spawn."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, WorkerDiedError
from nestpool._dispatcher import Dispatcher
from nestpool._records import TaskState
from tests import core_tasks
from tests.conftest import record_started_workers, wait_until
from tests.helpers import local_engine

pytestmark = pytest.mark.timeout(90)


def _dispatcher(pool: Pool) -> Dispatcher:
    dispatcher = local_engine(pool).dispatcher
    assert dispatcher is not None
    return dispatcher


def _held_by_worker(dispatcher: Dispatcher) -> dict[int, list[tuple[str, TaskState]]]:
    """pid -> (task name, state) of the tasks each worker holds (a snapshot)."""
    return {
        worker.pid: [(task.name, task.state) for task in list(worker.tasks.values())]
        for worker in dispatcher._workers.handles()
    }


def test_sigkill_mid_task_fails_only_that_task(start_method: str, tmp_path: Path) -> None:
    ready_a, ready_b = tmp_path / "ready-a", tmp_path / "ready-b"
    never, release_b = tmp_path / "never", tmp_path / "release-b"
    with Pool(processes=2, threads=1, start_method=start_method) as pool:
        started_workers = record_started_workers(pool)
        doomed = core_tasks.hold(str(ready_a), str(never), "a")
        survivor = core_tasks.hold(str(ready_b), str(release_b), "b")
        assert wait_until(lambda: ready_a.exists() and ready_b.exists(), 60)
        queued = core_tasks.double_it(21)  # both workers are busy: it waits its turn
        pid_a, pid_b = int(ready_a.read_text()), int(ready_b.read_text())
        assert pid_a != pid_b
        assert {pid_a, pid_b} == set(pool.worker_pids())

        # The parent knows which task each worker holds (SENT: a call with no
        # timeout answers no Ack), each worker's start mark names it as
        # started (so that a death fails it rather than running it again),
        # and each worker has its own channel and sentinel.
        dispatcher = _dispatcher(pool)
        assert wait_until(
            lambda: (
                _held_by_worker(dispatcher)
                == {pid_a: [("hold", TaskState.SENT)], pid_b: [("hold", TaskState.SENT)]}
            ),
            30,
        )
        workers = dispatcher._workers.handles()
        for worker in workers:
            assert dispatcher._workers.started(worker) == [(next(iter(worker.tasks)), 0)]
        assert len({id(w.conn) for w in workers}) == 2
        assert dispatcher._workers.watched() == [
            *(w.conn for w in workers),
            *(w.process.sentinel for w in workers),
        ]

        os.kill(pid_a, signal.SIGKILL)
        error = doomed.exception(timeout=30)
        assert isinstance(error, WorkerDiedError)
        assert isinstance(error, BrokenProcessPool)
        assert error.task_name == "hold"
        assert error.pid == pid_a
        assert error.exitcode == -signal.SIGKILL
        assert error.signal == "SIGKILL"
        assert "'hold'" in str(error)
        assert f"pid {pid_a} killed by SIGKILL" in str(error)

        # the other in-flight task was not touched; it finishes when released
        assert not survivor.done()
        release_b.touch()
        assert survivor.result(timeout=30) == "b"
        assert queued.result(timeout=30) == 42

        # the pool replaced the worker and goes on
        futures = [core_tasks.double_it(i) for i in range(50)]
        assert [f.result(timeout=60) for f in futures] == [2 * i for i in range(50)]
        assert len(pool.worker_pids()) == 2
        assert pid_a not in pool.worker_pids()
        assert pid_a in started_workers


def test_a_worker_killed_while_idle_is_replaced(tmp_path: Path) -> None:
    with Pool(processes=1, threads=1, start_method="fork") as pool:
        started_workers = record_started_workers(pool)
        first = core_tasks.pid_after(0).result(timeout=30)
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: first not in pool.worker_pids(), 30)
        second = core_tasks.pid_after(0).result(timeout=30)
        assert second != first
        assert started_workers == [first, second]


def test_the_worker_thread_pool_is_created_once_and_reused(start_method: str) -> None:
    threads = 3
    with Pool(processes=1, threads=threads, start_method=start_method) as pool:
        reports: list[dict[str, Any]] = [
            f.result(timeout=60) for f in [core_tasks.subtask_threads(6) for _ in range(20)]
        ]
        worker_pid = pool.worker_pids()[0]
    assert {r["pid"] for r in reports} == {worker_pid}
    # one subtask pool object in that worker, sized by threads=
    assert len({r["pool_id"] for r in reports}) == 1
    assert {r["pool_max"] for r in reports} == {threads}
    # Native thread ids are never reused soon by Linux: if each task had made
    # its own pool, 20 tasks would have shown up to 20 x threads of them.
    pool_threads = {
        native
        for r in reports
        for native, name in r["ran_on"]
        if name.startswith("nestpool-subtask")
    }
    assert 1 <= len(pool_threads) <= threads
    # anything else ran on the task's own runner thread (a waiter runs an
    # unstarted subtask itself)
    runners = {r["runner"] for r in reports}
    assert all(
        native in pool_threads or native in runners for r in reports for native, _ in r["ran_on"]
    )
    assert len(runners) == 1  # tasks_per_process=1: one runner thread


@pytest.mark.parametrize("task", [core_tasks.no_real_limit, core_tasks.limit_in_centuries])
def test_a_huge_or_infinite_timeout_never_breaks_the_pool(task: Any) -> None:
    assert task.timeout in (float("inf"), 1e12)
    with Pool(processes=1, start_method="fork") as pool:
        # the deadline is in the dispatcher's heap while it waits for more work
        first = task(0.05).result(timeout=30)
        assert first in pool.worker_pids()
        assert core_tasks.double_it(4).result(timeout=30) == 8
        assert task(0.05).result(timeout=30) == first
