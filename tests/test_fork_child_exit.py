"""A forked worker must not run the parent's at-exit pool shutdown (a hang).

A worker started with fork inherits the parent's registry of open pools and
its at-exit hook. Were the hook to shut those pools down in the child as it
exits, it would wait on a lock that a parent thread held at the fork, which
stays locked there forever: the worker would never exit, ``with Pool`` would
never return, and after a parent death the worker would be orphaned.
"""

from __future__ import annotations

import pytest

from nestpool import Pool
from tests import helpers
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)


def test_forked_worker_exits_while_a_parent_lock_was_held_at_the_fork() -> None:
    with Pool(processes=1, threads=1, start_method="fork") as pool:
        subtasks = pool.subtask_pool()
        assert subtasks is not None
        # Hold the parent's subtask-pool lock while the dispatcher forks the worker.
        with subtasks._lock:
            future = helpers.add(1, 2)
            assert wait_until(lambda: bool(pool.worker_pids()), 30)
        assert future.result(timeout=30) == 3
    # Leaving the block waits for the worker to exit: it did, or pytest-timeout fires.
