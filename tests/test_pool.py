"""``Pool``: its options and its ``concurrent.futures.Executor`` API: submit,
map, shutdown, the ``with`` block, two pools at once."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import sys
import threading
from concurrent.futures import (
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from concurrent.futures import TimeoutError as FuturesTimeoutError
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, PoolClosedError, _pool, _subtask_pool, thread_subtask
from tests import core_tasks, helpers, ux_helpers
from tests.conftest import record_started_workers, wait_until
from tests.helpers import local_engine

pytestmark = pytest.mark.timeout(60)

CLOSED = "cannot schedule new futures after shutdown"


def _usable_cpus() -> int:
    if hasattr(os, "process_cpu_count"):
        return int(os.process_cpu_count() or 1)
    return len(os.sched_getaffinity(0))


# ------------------------------------------------------------------ options


def test_defaults() -> None:
    with Pool() as pool:
        assert pool.processes == _usable_cpus()
        assert pool.threads is None
        assert pool.tasks_per_process == 1
        assert pool.start_method == "forkserver"  # Linux has it
        subtasks = pool.subtask_pool()
        assert subtasks is not None
        # threads=None: the standard library's default size
        assert subtasks.max_workers == ThreadPoolExecutor()._max_workers


def test_default_start_method_is_spawn_without_forkserver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["fork", "spawn"])
    with Pool(processes=1) as pool:
        assert pool.start_method == "spawn"


def test_default_threads_follow_the_standard_library(monkeypatch: pytest.MonkeyPatch) -> None:
    # ThreadPoolExecutor counts os.cpu_count() up to 3.12, os.process_cpu_count() from 3.13.
    monkeypatch.setattr(os, "cpu_count", lambda: 20)
    if hasattr(os, "process_cpu_count"):
        monkeypatch.setattr(os, "process_cpu_count", lambda: 3)
    assert _subtask_pool.default_threads() == ThreadPoolExecutor()._max_workers


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"processes": -1}, "processes"),
        ({"threads": -1}, "threads"),
        ({"tasks_per_process": 0}, "tasks_per_process"),
        ({"tasks_per_process": -2}, "tasks_per_process"),
    ],
)
def test_negative_or_zero_counts_are_a_value_error_naming_the_argument(
    options: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be >= \d, got -?\d+$"):
        Pool(**options)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"processes": 2.0}, "processes"),
        ({"processes": "2"}, "processes"),
        ({"threads": True}, "threads"),
        ({"tasks_per_process": None}, "tasks_per_process"),
    ],
)
def test_counts_that_are_not_ints_are_a_type_error(options: dict[str, Any], name: str) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be an int"):
        Pool(**options)


@pytest.mark.parametrize("method", ["threads", "Spawn", "", "forkserver "])
def test_an_unknown_start_method_is_a_value_error_naming_it(method: str) -> None:
    with pytest.raises(ValueError, match="start_method") as info:
        Pool(start_method=method)
    assert repr(method) in str(info.value)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_tasks_per_child": 0}, ValueError, "max_tasks_per_child must be >= 1"),
        ({"max_tasks_per_child": -1}, ValueError, "max_tasks_per_child must be >= 1"),
        ({"max_tasks_per_child": 1.5}, TypeError, "max_tasks_per_child must be an integer"),
        ({"max_tasks_per_child": "2"}, TypeError, "max_tasks_per_child must be an integer"),
        ({"initializer": 42}, TypeError, "initializer must be a callable"),
        ({"max_workers": 0}, ValueError, "max_workers must be greater than 0"),
    ],
)
def test_process_pool_executors_options_fail_in_its_words(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    spawn = multiprocessing.get_context("spawn")
    with pytest.raises(error) as ours:
        Pool(mp_context=spawn, **options)
    assert str(ours.value) == message
    if "max_tasks_per_child" not in options or sys.version_info >= (3, 11):
        # the standard library's own words (max_tasks_per_child is new in 3.11)
        with pytest.raises(error) as theirs:
            ProcessPoolExecutor(mp_context=spawn, **options)
        assert str(theirs.value) == message


def test_an_initializer_that_is_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"^initializer must be a callable$"):
        Pool(initializer=42)  # type: ignore[arg-type]


def test_a_rejected_pool_is_not_left_open() -> None:
    with pytest.raises(ValueError):
        Pool(processes=-1)
    assert helpers.where_task().result() == (os.getpid(), False)


def test_processes_zero_runs_submit_and_map_inline() -> None:
    with Pool(processes=0) as pool:
        future = pool.submit(os.getpid)
        assert future.done()
        assert future.result() == os.getpid()
        assert list(pool.map(core_tasks.plain_triple, range(4))) == [0, 3, 6, 9]
        assert pool.submit(core_tasks.double_it, 4).result() == 8
    assert pool.worker_pids() == []


def test_threads_zero_runs_parent_subtasks_inline() -> None:
    with Pool(processes=1, threads=0) as pool:
        assert pool.subtask_pool() is None
        future = helpers.where_subtask()
        assert future.done()
        assert future.result()[:2] == (os.getpid(), threading.get_ident())


def test_tasks_per_process_runs_that_many_tasks_at_once_in_one_worker(start_method: str) -> None:
    k = 3
    with (
        multiprocessing.Manager() as manager,
        Pool(processes=1, threads=1, tasks_per_process=k, start_method=start_method) as pool,
    ):
        barrier = manager.Barrier(k)
        # Each task waits until all k are at the barrier: only k tasks running
        # at once in the one worker can pass it (else BrokenBarrierError).
        futures = [core_tasks.meet_in_process(barrier) for _ in range(k)]
        results = [f.result(timeout=30) for f in futures]
        pids = {pid for pid, _ in results}
        assert pids == set(pool.worker_pids())
        assert len(pids) == 1
        assert len({ident for _, ident in results}) == k  # k runner threads


def test_initializer_runs_in_each_worker_with_its_initargs(start_method: str) -> None:
    with (
        multiprocessing.Manager() as manager,
        Pool(
            processes=2,
            start_method=start_method,
            initializer=core_tasks.set_marker,
            initargs=(7, "seven"),
        ) as pool,
    ):
        barrier = manager.Barrier(2)  # two tasks at once: one in each worker
        futures = [core_tasks.marker_at_barrier(barrier) for _ in range(2)]
        results = [f.result(timeout=30) for f in futures]
        assert {pid for _, pid in results} == set(pool.worker_pids())
        for (values, init_pid), pid in results:
            assert values == (7, "seven")
            assert init_pid == pid
    assert core_tasks.MARKER is None  # it ran in the workers, not here


def test_an_initializer_closure_goes_by_value() -> None:
    def make_initializer(value: str) -> Any:
        def initializer() -> None:
            core_tasks.set_marker(value)

        return initializer

    with Pool(processes=1, start_method="spawn", initializer=make_initializer("closure")):
        (values, _), _ = core_tasks.read_marker().result(timeout=30)
    assert values == ("closure",)


def test_max_tasks_per_child_replaces_the_worker() -> None:
    with Pool(processes=1, max_tasks_per_child=2, start_method="fork"):
        pids = [core_tasks.pid_after(0).result(timeout=30) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


# ------------------------------------------------------------ Executor API


def test_pool_is_a_concurrent_futures_executor() -> None:
    assert issubclass(Pool, Executor)
    parameters = inspect.signature(Pool.submit).parameters
    kinds = [(p.name, p.kind) for p in parameters.values()]
    assert kinds == [
        ("self", inspect.Parameter.POSITIONAL_ONLY),
        ("fn", inspect.Parameter.POSITIONAL_ONLY),
        ("args", inspect.Parameter.VAR_POSITIONAL),
        ("kwargs", inspect.Parameter.VAR_KEYWORD),
    ]
    map_parameters = inspect.signature(Pool.map).parameters
    assert map_parameters["timeout"].default is None
    assert map_parameters["chunksize"].default == 1
    assert map_parameters["timeout"].kind is inspect.Parameter.KEYWORD_ONLY
    shutdown = inspect.signature(Pool.shutdown).parameters
    assert shutdown["wait"].default is True
    assert shutdown["cancel_futures"].default is False
    assert shutdown["cancel_futures"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("processes", [0, 1])
def test_submit_passes_keywords_named_fn_and_self_through(processes: int) -> None:
    with Pool(processes=processes) as pool:
        future = pool.submit(core_tasks.keywords, 1, fn="f", self="s")
        assert future.result(timeout=30) == ((1,), {"fn": "f", "self": "s"})
        assert pool.submit(dict, fn=1, self=2).result(timeout=30) == {"fn": 1, "self": 2}


def test_submit_runs_in_a_worker_and_returns_a_future() -> None:
    with Pool(processes=1) as pool:
        future = pool.submit(os.getpid)
        assert isinstance(future, Future)
        assert future.result(timeout=30) in pool.worker_pids()
        # a decorated task runs its plain function: Future[R], not Future[Future[R]]
        assert pool.submit(core_tasks.double_it, 21).result(timeout=30) == 42
        assert pool.submit(core_tasks.double_it, x=4).result(timeout=30) == 8
        exc = pool.submit(int, "x").exception(timeout=30)
        assert isinstance(exc, ValueError)


def test_map_zips_iterables_in_input_order() -> None:
    with Pool(processes=2) as pool:
        assert list(pool.map(pow, [2, 3, 4], [5, 2, 3])) == [32, 9, 64]
        # the shortest iterable ends the map, as zip() and the standard library
        assert list(pool.map(pow, [2, 3, 4], [5, 2])) == [32, 9]
        assert list(pool.map(core_tasks.plain_triple, [])) == []
        assert list(pool.map(core_tasks.double_it, range(10))) == [2 * i for i in range(10)]


@pytest.mark.parametrize("chunksize", [1, 3, 10, 50])
def test_map_chunksize_keeps_values_and_order(chunksize: int) -> None:
    with Pool(processes=2) as pool:
        values = list(pool.map(helpers.add, range(23), range(100, 123), chunksize=chunksize))
    assert values == [i + 100 + i for i in range(23)]


def test_map_rejects_a_chunksize_below_one() -> None:
    with Pool(processes=1) as pool, pytest.raises(ValueError, match="chunksize must be >= 1"):
        pool.map(pow, [1], [1], chunksize=0)


def test_map_raises_an_item_exception_at_its_place() -> None:
    with Pool(processes=1) as pool:
        values = pool.map(ux_helpers.fail_on, range(5), [3] * 5, chunksize=2)
        assert [next(values) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(ValueError, match="bad item 3"):
            next(values)


def test_map_timeout_counts_from_the_call(tmp_path: Path) -> None:
    ready, release = str(tmp_path / "ready"), str(tmp_path / "release")
    with Pool(processes=1) as pool:
        values = pool.map(core_tasks.plain_hold, [ready], [release], ["v"], timeout=0.3)
        with pytest.raises(FuturesTimeoutError):
            next(values)
        Path(release).touch()


def test_submit_and_map_after_shutdown_raise_the_standard_library_error() -> None:
    pool = Pool(processes=1)
    assert pool.submit(pow, 2, 3).result(timeout=30) == 8
    pool.shutdown()
    with pytest.raises(RuntimeError, match=f"^{CLOSED}$") as info:
        pool.submit(pow, 2, 3)
    assert isinstance(info.value, PoolClosedError)
    with pytest.raises(PoolClosedError, match=f"^{CLOSED}$"):
        pool.map(pow, [2], [3])
    pool.shutdown()  # again: harmless
    pool.shutdown(wait=False, cancel_futures=True)


def test_submit_after_shutdown_of_an_inline_pool_raises_too() -> None:
    with Pool(processes=0) as pool:
        pass
    with pytest.raises(PoolClosedError, match=f"^{CLOSED}$"):
        pool.submit(pow, 2, 3)


def test_shutdown_of_an_unused_pool_starts_nothing() -> None:
    pool = Pool(processes=2)
    pool.shutdown()
    assert local_engine(pool).dispatcher is None
    assert pool.worker_pids() == []


def test_shutdown_wait_false_returns_at_once(tmp_path: Path) -> None:
    ready, release = tmp_path / "ready", tmp_path / "release"
    pool = Pool(processes=1)
    future = core_tasks.hold(str(ready), str(release), "held")
    assert wait_until(ready.exists, 30)
    pool.shutdown(wait=False)
    # It returned while the task still waits for the release file.
    assert not future.done()
    with pytest.raises(PoolClosedError):
        pool.submit(pow, 2, 3)
    release.touch()
    assert future.result(timeout=30) == "held"
    dispatcher = local_engine(pool).dispatcher
    assert dispatcher is not None
    assert wait_until(lambda: not dispatcher.is_alive(), 30)


@pytest.mark.parametrize("wait", [True, False])
def test_shutdown_cancel_futures_cancels_what_has_not_started(wait: bool) -> None:
    pool = Pool(processes=1)
    running = core_tasks.pid_after(0.5)
    assert wait_until(running.running, 30)  # sent to the one worker
    queued = [core_tasks.pid_after(0) for _ in range(4)]
    pool.shutdown(wait=wait, cancel_futures=True)
    # Cancelled by the time shutdown returns, even with wait=False (as
    # ThreadPoolExecutor does).
    assert all(f.cancelled() for f in queued)
    with pytest.raises(CancelledError):
        queued[0].result()
    assert running.result(timeout=30) > 0
    pool.shutdown()


def test_shutdown_without_cancel_futures_runs_everything() -> None:
    pool = Pool(processes=1)
    futures = [core_tasks.double_it(i) for i in range(6)]
    pool.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2 * i for i in range(6)]


@thread_subtask
def _subtask_that_calls_a_process_task(x: int) -> tuple[int, int]:
    # Runs on the parent's subtask pool; its process task goes to the pool.
    return core_tasks.double_it(x).result(timeout=30), core_tasks.pid_after(0.1).result(timeout=30)


def test_leaving_with_normally_waits_for_all_submitted_work() -> None:
    with Pool(processes=2, threads=2) as pool:
        started_workers = record_started_workers(pool)
        tasks = [core_tasks.pid_after(0.1) for _ in range(4)]
        submitted = [pool.submit(core_tasks.plain_triple, i) for i in range(4)]
        subtasks = [helpers.double(i) for i in range(4)]
        nested = _subtask_that_calls_a_process_task(5)
        # none of them is waited on before the block ends
    for future in [*tasks, *submitted, *subtasks, nested]:
        assert future.done() and not future.cancelled()
    assert {f.result() for f in tasks} <= set(started_workers)
    assert [f.result() for f in submitted] == [0, 3, 6, 9]
    assert [f.result() for f in subtasks] == [0, 2, 4, 6]
    doubled, pid = nested.result()
    assert doubled == 10
    assert pid != os.getpid()


class _Stop(Exception):
    pass


def test_leaving_with_by_an_exception_cancels_what_has_not_started_and_reraises() -> None:
    pool = Pool(processes=1)
    running = core_tasks.pid_after(0.5)
    assert wait_until(running.running, 30)
    queued = [core_tasks.pid_after(0) for _ in range(4)]
    with pytest.raises(_Stop), pool:
        raise _Stop
    assert all(f.cancelled() for f in queued)
    assert running.result(timeout=0) > 0  # what had started finished
    with pytest.raises(PoolClosedError):
        pool.submit(pow, 2, 3)


# ------------------------------------------------------------ two pools


def test_nested_with_the_inner_pool_wins_for_its_block() -> None:
    with Pool(processes=1, threads=1) as outer:
        outer_pid = helpers.getpid_task().result(timeout=30)
        assert outer.worker_pids() == [outer_pid]
        with Pool(processes=1, threads=1) as inner:
            inner_pid = helpers.getpid_task().result(timeout=30)
            assert inner.worker_pids() == [inner_pid]
            assert inner_pid != outer_pid
            # subtasks go to the inner pool's thread pool
            _, _, thread_name = helpers.where_subtask().result(timeout=30)
            assert thread_name.startswith(f"{inner._name}-subtask")
            # submit and map always use the pool they are called on
            assert outer.submit(os.getpid).result(timeout=30) == outer_pid
            assert list(outer.map(helpers.getpid_task, [None])) == [outer_pid]
            assert inner.submit(os.getpid).result(timeout=30) == inner_pid
        assert helpers.getpid_task().result(timeout=30) == outer_pid
        _, _, thread_name = helpers.where_subtask().result(timeout=30)
        assert thread_name.startswith(f"{outer._name}-subtask")
    assert helpers.getpid_task().result() == os.getpid()


def test_the_last_opened_pool_wins_until_it_shuts_down_in_any_order() -> None:
    first = Pool(processes=1)
    second = Pool(processes=1)
    try:
        second_pid = helpers.getpid_task().result(timeout=30)
        assert second.worker_pids() == [second_pid]
        first.shutdown()  # the older one closes first: calls still go to the newer
        assert helpers.getpid_task().result(timeout=30) == second_pid
        assert first.worker_pids() == []
    finally:
        first.shutdown()
        second.shutdown()
    assert helpers.getpid_task().result() == os.getpid()


def test_the_docs_say_which_pool_wins() -> None:
    text = (Path(__file__).parents[1] / "docs" / "routing.md").read_text()
    assert "## Two pools open at once" in text
    assert "decorated calls go to the one opened last, until it shuts down" in text
    assert "`pool.submit(...)` and `pool.map(...)` always use the pool they are called on" in text
    assert "opened last" in (Pool.__doc__ or "")


def test_repr_says_the_options_and_state() -> None:
    pool = Pool(processes=2, threads=3, start_method="spawn")
    assert repr(pool).endswith(
        "open processes=2 threads=3 tasks_per_process=1 start_method='spawn'>"
    )
    pool.shutdown()
    assert " closed " in repr(pool)


def test_usable_cpu_count_is_affinity_aware() -> None:
    assert _pool.usable_cpu_count() == _usable_cpus()
    if sys.platform.startswith("linux"):
        assert _pool.usable_cpu_count() <= len(os.sched_getaffinity(0))


def test_a_call_that_read_the_route_just_before_shutdown_fails_its_future() -> None:
    # A decorated call in another thread may have read the route just before
    # the pool shut down; it must neither start workers for a closed pool nor
    # raise: its future fails with PoolClosedError.
    pool = Pool(processes=1)
    pool.shutdown()
    future = pool.submit_task(core_tasks.double_it._self_options, (1,), {})
    assert isinstance(future.exception(timeout=10), PoolClosedError)
    assert local_engine(pool).dispatcher is None
    assert pool.worker_pids() == []
    chunks = pool.map_task(core_tasks.double_it._self_options, ([1, 2],), True, None, None)
    with pytest.raises(PoolClosedError):
        list(chunks)
    assert local_engine(pool).dispatcher is None


@pytest.mark.parametrize("exit_with", [SystemExit, GeneratorExit])
def test_leaving_with_by_sys_exit_lets_running_tasks_finish(exit_with: type[BaseException]) -> None:
    # Like any exception but Ctrl-C: cancel what has not started, let what
    # runs finish (as concurrent.futures does), rather than kill the workers.
    pool = Pool(processes=1)
    running = core_tasks.pid_after(0.5)
    assert wait_until(running.running, 30)
    queued = [core_tasks.pid_after(0) for _ in range(3)]
    with pytest.raises(exit_with), pool:
        raise exit_with
    assert running.result(timeout=0) > 0
    assert all(f.cancelled() for f in queued)


@thread_subtask
def _first_process_task_after(ready: str, release: str) -> int:
    # Runs on the parent's subtask pool; makes the pool's first process-task
    # call only once the with block is being left.
    Path(ready).touch()
    deadline_path = Path(release)
    assert wait_until(deadline_path.exists, 30)
    return core_tasks.double_it(21).result(timeout=30)


def test_a_subtask_may_make_the_first_process_task_call_while_the_pool_shuts_down(
    tmp_path: Path,
) -> None:
    ready, release = tmp_path / "ready", tmp_path / "release"
    pool = Pool(processes=1, threads=1)
    future = _first_process_task_after(str(ready), str(release))
    assert wait_until(ready.exists, 30)
    closer = threading.Thread(target=pool.shutdown, name="closer")
    closer.start()
    assert wait_until(lambda: pool._closed, 30)  # shutdown is waiting for the subtask
    release.touch()
    closer.join(30)
    assert not closer.is_alive()
    assert future.result(timeout=0) == 42


def test_a_plain_callable_is_named_without_an_address_in_errors() -> None:
    import functools
    import threading

    from nestpool import TaskPicklingError
    from nestpool._calls import callable_name

    assert callable_name(pow) == "pow"
    assert callable_name(functools.partial(pow, 2)) == "partial(pow)"
    assert callable_name(functools.partial(functools.partial(pow, 2), 3)) == "partial(pow)"

    class Scale:
        def __call__(self, x: int) -> int:
            return 2 * x

    assert callable_name(Scale()).endswith("Scale")
    with Pool(processes=1) as pool:
        error = pool.submit(functools.partial(pow, threading.Lock())).exception(timeout=30)
    assert isinstance(error, TaskPicklingError)
    assert str(error).startswith("task 'partial(pow)': ")
