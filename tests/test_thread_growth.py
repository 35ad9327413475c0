"""A subtask pool grows to run a burst of submits at once (up to ``threads``),
even when one of its threads is idle when the burst begins."""

from __future__ import annotations

import threading

import pytest

from nestpool import Pool, gather

from .ux_helpers import triple

pytestmark = pytest.mark.timeout(60)


def test_a_burst_grows_the_pool_past_one_idle_thread() -> None:
    parties = 8
    barrier = threading.Barrier(parties, timeout=20)
    with Pool(processes=1, threads=parties) as pool:
        assert triple(1).result() == 3  # one thread exists now, and goes idle
        subtasks = pool.subtask_pool()
        assert subtasks is not None
        # Every subtask waits for all the others: only `parties` threads
        # running at once can pass the barrier (else BrokenBarrierError).
        futures = [subtasks.submit(barrier.wait, (), {}) for _ in range(parties)]
        assert sorted(gather(futures)) == list(range(parties))
