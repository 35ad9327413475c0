"""The routing table (docs/routing.md), cell by cell, from the main thread and
others."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from nestpool import Pool, process_task, thread_subtask
from tests import core_tasks, helpers

pytestmark = pytest.mark.timeout(60)


@process_task
def failing_task() -> None:
    raise KeyError("task failed")


@thread_subtask
def failing_subtask() -> None:
    raise KeyError("subtask failed")


def test_no_pool_process_task_runs_inline_and_returns_completed_future() -> None:
    future = helpers.where_task()
    assert isinstance(future, Future)
    assert future.done()
    assert future.result() == (os.getpid(), False)


def test_no_pool_subtask_runs_inline_in_calling_thread() -> None:
    future = helpers.where_subtask()
    assert future.done()
    pid, ident, _ = future.result()
    assert (pid, ident) == (os.getpid(), threading.get_ident())


def test_inline_calls_never_raise_the_task_exception() -> None:
    future = failing_task()
    assert isinstance(future.exception(), KeyError)
    sub = failing_subtask()
    assert isinstance(sub.exception(), KeyError)


def test_pool_open_process_task_goes_to_a_worker(start_method: str) -> None:
    with Pool(processes=2, threads=2, start_method=start_method) as pool:
        pid, in_worker = helpers.where_task().result(timeout=30)
        assert pid != os.getpid()
        assert in_worker
        assert pid in pool.worker_pids()


def test_pool_open_subtask_runs_on_the_parent_thread_pool() -> None:
    with Pool(processes=1, threads=2):
        future = helpers.where_subtask()
        pid, ident, name = future.result(timeout=10)
    assert pid == os.getpid()
    assert name.startswith("nestpool")
    assert ident != threading.get_ident() or name != threading.current_thread().name


def test_pool_open_routes_calls_from_other_threads(start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method), ThreadPoolExecutor(3) as other:
        task_pids = list(other.map(lambda _: helpers.where_task().result(timeout=30)[0], range(3)))
        subtask_results = list(other.map(lambda _: helpers.where_subtask().result(), range(3)))
    assert all(pid != os.getpid() for pid in task_pids)
    assert all(name.startswith("nestpool") for _, _, name in subtask_results)


def test_inside_worker_process_task_inline_subtask_on_worker_pool(start_method: str) -> None:
    with Pool(processes=1, threads=3, start_method=start_method):
        info = helpers.nested_where().result(timeout=30)
    worker_pid = info["pid"]
    assert worker_pid != os.getpid()
    # a process task called inside a worker ran inline there, completed at once
    assert info["inner_done_at_return"]
    assert info["inner"] == (worker_pid, True)
    # a subtask called inside a worker ran in that worker: on its thread pool,
    # or on the task's own thread, which runs a subtask it waits on if no
    # pool thread has started it yet (no thread hop, no deadlock)
    sub_pid, _, sub_thread = info["sub"]
    assert sub_pid == worker_pid
    assert sub_thread.startswith(("nestpool-subtask", "nestpool-worker"))


def test_inside_worker_subtasks_run_concurrently_on_the_worker_pool(start_method: str) -> None:
    with Pool(processes=1, threads=4, start_method=start_method):
        names = helpers.concurrent_subtasks(4).result(timeout=30)
    # four subtasks met at a barrier of four: they ran at the same time, at
    # least three of them on the worker's subtask threads
    assert sum(name.startswith("nestpool-subtask") for name in names) >= 3


def test_exceptions_travel_in_the_future_with_a_pool() -> None:
    with Pool(processes=1, threads=1):
        future = helpers.raise_value_error("boom")
        exc = future.exception(timeout=30)
        sub = failing_subtask()
        sub_exc = sub.exception(timeout=10)
    assert isinstance(exc, ValueError)
    assert str(exc) == "boom"
    assert isinstance(sub_exc, KeyError)


def test_after_the_pool_closes_calls_run_inline_again() -> None:
    with Pool(processes=1, threads=1):
        assert helpers.where_task().result(timeout=30)[0] != os.getpid()
    assert helpers.where_task().result() == (os.getpid(), False)


def test_processes_zero_runs_process_tasks_inline() -> None:
    with Pool(processes=0, threads=2):
        future = helpers.where_task()
        assert future.done()
        assert future.result() == (os.getpid(), False)
        assert list(helpers.square.map(range(4))) == [0, 1, 4, 9]


def test_threads_zero_runs_subtasks_inline() -> None:
    with Pool(processes=0, threads=0):
        future = helpers.where_subtask()
        assert future.done()
        assert future.result()[1] == threading.get_ident()


def test_threads_zero_inside_worker_runs_subtasks_inline(start_method: str) -> None:
    with Pool(processes=1, threads=0, start_method=start_method):
        info = helpers.nested_where().result(timeout=30)
    # the thread that runs the task itself: the worker's main thread
    assert info["sub"][2] == "MainThread"


def test_two_open_pools_the_last_opened_wins_until_it_closes() -> None:
    with Pool(processes=1, threads=1) as outer:
        outer_pid = helpers.getpid_task().result(timeout=30)
        assert outer_pid in outer.worker_pids()
        with Pool(processes=1, threads=1) as inner:
            inner_pid = helpers.getpid_task().result(timeout=30)
            assert inner_pid in inner.worker_pids()
            assert inner_pid != outer_pid
        assert helpers.getpid_task().result(timeout=30) in outer.worker_pids()


def test_no_pool_calls_from_other_threads_run_inline_in_that_thread() -> None:
    def call() -> tuple[tuple[int, bool], tuple[int, int, str], int]:
        task, sub = helpers.where_task(), helpers.where_subtask()
        assert task.done() and sub.done()
        return task.result(), sub.result(), threading.get_ident()

    with ThreadPoolExecutor(2) as other:
        results = list(other.map(lambda _: call(), range(4)))
    for task, (pid, ident, _), caller in results:
        assert task == (os.getpid(), False)
        assert (pid, ident) == (os.getpid(), caller)


def test_inside_worker_a_process_task_called_from_a_subtask_runs_inline_there(
    start_method: str,
) -> None:
    with Pool(processes=1, threads=2, start_method=start_method) as pool:
        info = core_tasks.via_subtask().result(timeout=30)
        worker_pid = pool.worker_pids()[0]
    assert info["pid"] == worker_pid
    assert info["done_at_return"]
    assert info["where"] == (worker_pid, True)


def test_inline_futures_are_plain_completed_futures() -> None:
    for future in (helpers.where_task(), helpers.where_subtask(), failing_task()):
        assert type(future) is Future
        assert future.done()
        assert not future.running()
        assert not future.cancel()  # finished: cannot be cancelled
        seen: list[Future[object]] = []
        future.add_done_callback(seen.append)  # runs at once, as on any done future
        assert seen == [future]


def test_parent_subtasks_and_submit_from_other_threads_with_a_pool_open() -> None:
    with Pool(processes=1, threads=2) as pool, ThreadPoolExecutor(3) as other:
        pids = list(other.map(lambda _: pool.submit(os.getpid).result(timeout=30), range(3)))
        assert set(pids) == set(pool.worker_pids())
        # a process task called from a parent subtask thread goes to a worker too
        info = core_tasks.task_from_subtask().result(timeout=30)
    assert info["pid"] == os.getpid()
    assert info["thread"].startswith("nestpool")
    assert info["where"][0] in pids
    assert info["where"][1] is True
