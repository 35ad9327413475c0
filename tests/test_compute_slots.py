"""Compute slots: a pool with more process tasks at once than cores lets at
most ``cores`` of them run their own code after waiting on subtasks, in the
order their waits ended, so that their CPU phases run one after another at
full speed instead of all together, as a convoy that starts and ends at once.
It must never deadlock, and a worker's death must not cost the pool a slot."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from nestpool import Pool, WorkerDiedError
from nestpool._dispatcher import Dispatcher
from nestpool._pool import usable_cpu_count
from tests import slot_tasks as st
from tests.conftest import wait_until
from tests.helpers import local_engine

pytestmark = pytest.mark.timeout(90)

CORES = usable_cpu_count()


def _dispatcher(pool: Pool) -> Dispatcher:
    dispatcher = local_engine(pool).dispatcher
    assert dispatcher is not None
    return dispatcher


def test_no_compute_slots_when_every_task_can_have_a_core() -> None:
    with Pool(processes=CORES, threads=2) as pool:
        assert st.io_wait.sync(0) == 0
        assert pool.submit(abs, -1).result(timeout=30) == 1
        assert _dispatcher(pool)._workers.compute_slots is None


def test_at_most_cores_tasks_run_their_own_code_at_once(start_method: str, tmp_path: Path) -> None:
    # Two more processes than cores: a task that queues for a slot waits for
    # at most two phases (0.1 s), well inside the slot wait's bound.
    processes = CORES + 2
    with Pool(processes=processes, threads=2, start_method=start_method) as pool:
        count = 3 * processes
        done = list(st.io_then_own_code.map([str(tmp_path)] * count, range(count), [0.05] * count))
        assert sorted(done) == list(range(count))
        assert _dispatcher(pool)._workers.compute_slots is not None
    assert st.overlap(str(tmp_path)) <= CORES


def test_a_slot_holder_blocked_on_other_tasks_cannot_deadlock_the_pool(tmp_path: Path) -> None:
    # Every task takes a slot after its subtask, then waits (holding it) until
    # all have arrived: those still queued for a slot go on without one after
    # the bounded slot wait, so they all arrive.
    processes = CORES + 2
    with Pool(processes=processes, threads=2):
        futures = [st.io_then_meet(str(tmp_path), str(i), processes) for i in range(processes)]
        assert [f.result(timeout=60) for f in futures] == [processes] * processes


def test_a_worker_that_dies_holding_a_slot_gives_it_back(tmp_path: Path) -> None:
    processes = CORES + 1
    with Pool(processes=processes, threads=2) as pool:
        victim = st.io_then_hold(str(tmp_path))
        dispatcher = _dispatcher(pool)
        assert wait_until(lambda: any(tmp_path.glob("holding-*")), 30)
        pid = int(next(tmp_path.glob("holding-*")).name.split("-")[1])
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerDiedError):
            victim.result(timeout=30)
        # Idle again: every slot is back.
        slots = dispatcher._workers.compute_slots
        assert slots is not None
        assert wait_until(lambda: slots.get_value() == CORES, 10), slots.get_value()
        # And the slots still serve: 'cores' holders at once, all released.
        (tmp_path / "release").touch()
        holders = [st.io_then_hold(str(tmp_path)) for _ in range(CORES)]
        assert all(f.result(timeout=30) > 0 for f in holders)
        assert wait_until(lambda: slots.get_value() == CORES, 10), slots.get_value()
