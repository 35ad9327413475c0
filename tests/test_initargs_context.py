"""Objects of multiprocessing's default context in ``initargs``.

On Linux before Python 3.14 ``multiprocessing.Queue()`` belongs to the
``fork`` context: its semaphores have no name, so only forked workers can use
it. ``ProcessPoolExecutor``'s default context forks, so the standard logging
recipe (a ``QueueHandler`` over such a queue) works there; a ``Pool`` with no
start method given forks for it too, and one told to use another start method
says what to do at construction.
"""

from __future__ import annotations

import multiprocessing

import pytest

from nestpool import Pool, TaskPicklingError
from tests import fault_tasks as ft

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        multiprocessing.get_start_method() != "fork",
        reason="multiprocessing's default context does not fork on this platform",
    ),
]


def test_a_default_context_queue_in_initargs_works_with_the_default_start_method() -> None:
    queue = multiprocessing.Queue()
    with Pool(processes=2, initializer=ft.keep_queue, initargs=(queue,)) as pool:
        assert pool.start_method == "fork"
        assert sorted(pool.map(ft.put_in_kept_queue, range(6))) == list(range(6))
        assert sorted(queue.get(timeout=10) for _ in range(6)) == list(range(6))
    queue.close()
    queue.join_thread()


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_fork_context_queue_cannot_reach_other_workers(method: str) -> None:
    queue = multiprocessing.Queue()
    with pytest.raises(TaskPicklingError, match="made by a 'fork' context") as info:
        Pool(processes=1, start_method=method, initializer=ft.keep_queue, initargs=(queue,))
    assert info.value.direction == "initializer"
    assert "multiprocessing.get_context(start_method)" in str(info.value)
    queue.close()
    queue.join_thread()


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_queue_of_the_pools_own_context_works(method: str) -> None:
    queue = multiprocessing.get_context(method).Queue()
    with Pool(
        processes=2, start_method=method, initializer=ft.keep_queue, initargs=(queue,)
    ) as pool:
        assert sorted(pool.map(ft.put_in_kept_queue, range(4))) == list(range(4))
        assert sorted(queue.get(timeout=10) for _ in range(4)) == list(range(4))
    queue.close()
    queue.join_thread()
