"""Chaos soak: thousands of tasks while another thread SIGKILLs a random worker
every 100 ms. Every future ends, exactly once, as its correct value or a
WorkerDiedError; none hangs or is lost; after the killing stops, the pool runs
everything. Run once by .ci/run (``pytest -m soak``), not in the per-Python
suite (it is deselected by default; see pyproject.toml).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, WorkerDiedError
from tests import fault_tasks as ft
from tests.conftest import record_started_workers

pytestmark = [pytest.mark.soak, pytest.mark.timeout(240)]

TASKS = 2000
AFTER = 500
KILL_EVERY = 0.1
TASK_SECONDS = 0.01


def _expected(x: int) -> int:
    return sum(range(x % 1000)) + x


class _Chaos:
    """Submits tasks, counting each future's completions, while a thread
    SIGKILLs a random worker of the pool every ``KILL_EVERY`` seconds."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.calls: Counter[int] = Counter()
        self.kills: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _count(self, future: Future[Any]) -> None:
        with self._lock:
            self.calls[id(future)] += 1

    def _killer(self) -> None:
        rng = random.Random(4)
        while not self._stop.wait(KILL_EVERY):
            pids = self.pool.worker_pids()
            if not pids:
                continue
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills.add(pid)

    def run(self, submit: Callable[[int], Future[Any]]) -> list[Future[Any]]:
        """Submit ``TASKS`` calls under the killing; return their futures once
        all are done (the killing stops then)."""
        chaos = threading.Thread(target=self._killer, name="soak-killer")
        chaos.start()
        try:
            futures = []
            for x in range(TASKS):
                future = submit(x)
                future.add_done_callback(self._count)
                futures.append(future)
            _, not_done = wait(futures, timeout=180)
        finally:
            self._stop.set()
            chaos.join()
        assert not not_done, f"{len(not_done)} futures never finished"
        return futures

    def assert_each_completed_once(self) -> None:
        # Each future's callbacks ran exactly once: none completed twice or never.
        assert len(self.calls) == TASKS
        assert set(self.calls.values()) == {1}


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_chaos_soak(start_method: str) -> None:
    started = time.monotonic()
    with Pool(processes=4, threads=2, start_method=start_method) as pool:
        started_workers = record_started_workers(pool)
        chaos = _Chaos(pool)
        futures = chaos.run(lambda x: ft.soak_task(x, TASK_SECONDS))
        outcomes: Counter[str] = Counter()
        for x, future in enumerate(futures):
            error = future.exception()
            if error is None:
                assert future.result() == _expected(x)
                outcomes["value"] += 1
            else:
                assert isinstance(error, WorkerDiedError), repr(error)
                assert error.signal == "SIGKILL"
                assert error.pid in chaos.kills
                outcomes["WorkerDiedError"] += 1
        chaos_seconds = time.monotonic() - started

        after = [ft.soak_task(x, 0.0) for x in range(AFTER)]
        assert [f.result(timeout=60) for f in after] == [_expected(x) for x in range(AFTER)]

    chaos.assert_each_completed_once()
    assert outcomes["value"] + outcomes["WorkerDiedError"] == TASKS
    print(
        f"\nchaos soak ({start_method}): {TASKS} tasks in {chaos_seconds:.1f}s, "
        f"{len(chaos.kills)} workers SIGKILLed, {len(started_workers)} workers started; "
        f"{outcomes['value']} values, {outcomes['WorkerDiedError']} WorkerDiedError, "
        f"0 lost, 0 twice; then {AFTER}/{AFTER} tasks succeeded"
    )


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_chaos_soak_with_retries(start_method: str, tmp_path: Path) -> None:
    """The same chaos with ``retries=3``: every task succeeds, each future
    completes once; how many tasks a worker finished twice is reported (a
    worker killed between returning and sending its result: why retries are
    for idempotent tasks)."""
    started = time.monotonic()
    task = ft.soak_logged.options(retries=3)
    with Pool(processes=4, threads=2, start_method=start_method) as pool:
        started_workers = record_started_workers(pool)
        chaos = _Chaos(pool)
        futures = chaos.run(lambda x: task(x, TASK_SECONDS, str(tmp_path)))
        errors = [f.exception() for f in futures if f.exception() is not None]
        assert not errors, f"{len(errors)} failed despite retries=3: {errors[:3]!r}"
        assert [f.result() for f in futures] == [_expected(x) for x in range(TASKS)]
        chaos_seconds = time.monotonic() - started

    chaos.assert_each_completed_once()
    runs: dict[str, list[int]] = {}
    for line in (tmp_path / "done.log").read_text().splitlines():
        x, pid = line.split()
        runs.setdefault(x, []).append(int(pid))
    assert len(runs) == TASKS
    done = Counter({x: len(pids) for x, pids in runs.items()})
    finished_twice = sum(1 for n in done.values() if n > 1)
    # A task finishes twice in workers only when the worker that finished it
    # first was killed before its result got out (so it ran again).
    for pids in runs.values():
        assert all(pid in chaos.kills for pid in pids[:-1]), pids
    print(
        f"\nchaos soak with retries=3 ({start_method}): {TASKS} tasks in "
        f"{chaos_seconds:.1f}s, {len(chaos.kills)} workers SIGKILLed, "
        f"{len(started_workers)} workers started; {TASKS}/{TASKS} values, 0 errors, "
        f"0 lost, 0 futures completed twice; {sum(done.values()) - TASKS} extra runs "
        f"finished in a worker ({finished_twice} tasks finished twice there)"
    )
