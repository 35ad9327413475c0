"""``Pool(client=client)`` on a real ``distributed.LocalCluster(processes=True)``.

The workers are real processes started by Dask's nannies, so this is the same
code path as a cluster of several hosts. One cluster serves the module (it takes
seconds to start); it runs with ``allowed-failures=1``, so a task whose worker
dies is rerun once and fails with ``WorkerDiedError`` at the second death.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Future,
    as_completed,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from nestpool import (  # noqa: E402
    Pool,
    PoolClosedError,
    RemoteTaskError,
    TaskPicklingError,
    TaskTimeoutError,
    WorkerDiedError,
    gather,
)
from nestpool._serialize import RemoteTraceback  # noqa: E402

from . import dask_tasks as tasks  # noqa: E402
from .conftest import wait_until  # noqa: E402

pytestmark = [
    pytest.mark.timeout(90),
    # The module's cluster outlives each test; its own check is in the fixture.
    pytest.mark.allow_leftovers,
]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": 1,
            "distributed.worker.daemon": False,
        }
    ):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            worker_dashboard_address=None,
        )
        dask_client = distributed.Client(cluster)
    try:
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()
    assert wait_until(lambda: not _children(), 30), f"left behind: {_children()}"


def _children() -> list[Any]:
    from .conftest import _stray_children

    return _stray_children()


@pytest.fixture(autouse=True)
def no_nestpool_threads() -> Iterator[None]:
    yield
    from .conftest import _stray_threads

    assert wait_until(lambda: not _stray_threads(), 10)


def _worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


# ------------------------------------------------------------------ routing


def test_process_tasks_run_on_dask_workers(client: Any) -> None:
    with Pool(client=client) as pool:
        futures = [tasks.where_task() for _ in range(8)]
        assert all(type(f) is Future for f in futures)
        results = [f.result() for f in futures]
        assert set(pool.worker_pids()) == _worker_pids(client)
        assert pool.processes == 2
    workers = _worker_pids(client)
    for result in results:
        assert result["pid"] in workers
        assert result["pid"] != os.getpid()
        assert result["in_worker"]
        # A process task called there runs inline, in the same process.
        assert result["inner_done_at_return"]
        assert result["inner_pid"] == result["pid"]


def test_subtasks_use_one_persistent_pool_per_worker_process(client: Any) -> None:
    with Pool(client=client):
        first = [f.result() for f in [tasks.where_task() for _ in range(10)]]
        second = [tasks.where_task().result() for _ in range(10)]
    pools: dict[int, set[int]] = {}
    for result in first + second:
        for sub in result["subs"]:
            assert sub["pid"] == result["pid"]
            # On the worker's nestpool pool, or on the waiting Dask thread
            # itself when it ran an unstarted subtask (never on a new pool).
            assert sub["thread"].startswith("nestpool-subtask") or sub["ident"] == result["ident"]
            # ...and a thread of that very pool, not of another one.
            assert sub["ident"] in sub["pool_threads"] or sub["ident"] == result["ident"]
            pools.setdefault(sub["pid"], set()).add(sub["pool"])
    # One pool per worker process, created once and reused by every task.
    assert all(len(ids) == 1 for ids in pools.values())
    assert set(pools) <= _worker_pids(client)


def test_async_subtasks_run_on_the_dask_workers_own_nestpool_loop(client: Any) -> None:
    with Pool(client=client):
        results = [f.result() for f in [tasks.where_async() for _ in range(8)]]
    workers = _worker_pids(client)
    loops: dict[int, set[tuple[int, int]]] = {}
    for result in results:
        assert result["pid"] in workers
        for sub in result["subs"]:
            assert sub["pid"] == result["pid"]
            # nestpool's own loop thread, not Dask's event loop
            assert sub["thread"].startswith("nestpool-loop-")
            assert sub["loop"] != result["dask_loop"]
            assert sub["ident"] != result["dask_loop_thread"]
            loops.setdefault(sub["pid"], set()).add((sub["ident"], sub["loop"]))
    # one loop per Dask worker process, kept across tasks
    assert all(len(found) == 1 for found in loops.values())


def test_any_dask_task_sends_subtasks_to_the_workers_pool(client: Any) -> None:
    client.restart()  # fresh worker processes: no nestpool task ran there yet
    with Pool(client=client):
        result = client.submit(tasks.plain_dask_task, pure=False).result()
    assert result["in_worker"]
    assert result["sub"]["thread"].startswith("nestpool-subtask")


def test_in_process_workers_leave_the_clients_routing_alone() -> None:
    from nestpool import _routing

    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as in_process,
        Pool(client=in_process, threads=2) as pool,
    ):
        assert tasks.add(1, 2).result() == 3
        assert tasks.double(4).result() == 8
        assert _routing.current() is pool
    assert not _routing.in_worker()


def test_subtask_in_the_client_runs_on_the_pools_threads(client: Any) -> None:
    with Pool(client=client, threads=4):
        assert list(tasks.double.map(range(5))) == [0, 2, 4, 6, 8]
        assert tasks.double(21).result() == 42


def test_waiting_on_nested_subtasks_never_deadlocks(client: Any) -> None:
    # More process tasks than Dask threads, each waiting on nested subtasks.
    with Pool(client=client, threads=1):
        assert list(tasks.deep.map([4] * 12, ordered=False)) == [31 + 90] * 12


# ------------------------------------------------------------------ futures


def test_futures_work_with_wait_as_completed_gather_and_asyncio(client: Any) -> None:
    with Pool(client=client):
        futures = [tasks.add(i, 1) for i in range(6)]
        done, _ = wait(futures)
        assert done == set(futures)
        assert sorted(f.result() for f in as_completed(futures)) == list(range(1, 7))
        assert gather(futures) == list(range(1, 7))

        async def main() -> int:
            return await asyncio.wrap_future(tasks.add(40, 2))

        assert asyncio.run(main()) == 42


def test_executor_submit_and_map(client: Any) -> None:
    offset = 10
    with Pool(client=client) as pool:
        assert pool.submit(pow, 2, 10).result() == 1024
        # A closure cannot be imported on the worker: it travels by value.
        assert list(pool.map(lambda x: x + offset, range(4))) == [10, 11, 12, 13]
        assert pool.submit(tasks.add, 1, b=2).result() == 3
    with pytest.raises(PoolClosedError):
        pool.submit(pow, 2, 2)


def test_map_is_lazy_and_bounded(client: Any) -> None:
    pulled = itertools.count()

    def endless() -> Iterator[int]:
        for i in itertools.count():
            next(pulled)
            yield i

    with Pool(client=client):
        values = tasks.add.map(endless(), buffersize=4)
        assert list(itertools.islice(values, 20)) == list(range(20))
        # Never more than buffersize items taken beyond those yielded.
        assert next(pulled) <= 20 + 4
        values.close()


def test_map_unordered_and_chunked(client: Any) -> None:
    with Pool(client=client):
        assert sorted(tasks.add.map(range(30), ordered=False)) == list(range(30))
        assert list(tasks.add.map(range(30), range(30), chunksize=7)) == list(range(0, 60, 2))


def test_map_batches_tiny_tasks_into_chunks_by_itself(client: Any) -> None:
    with Pool(client=client):
        keys = list(tasks.current_key.map(range(2000)))
        explicit = list(tasks.current_key.map(range(40), chunksize=10))
    assert len(set(keys)) < 1000  # measured item time: tiny items are batched
    assert len(set(explicit)) == 4


def test_chunk_with_an_unpicklable_item_fails_that_item_alone(client: Any) -> None:
    with Pool(client=client):
        values = tasks.add.map([1, threading.Lock(), 3], chunksize=3)
        assert next(values) == 1
        with pytest.raises(TaskPicklingError):
            next(values)


def test_cancel_is_forwarded_to_dask(client: Any, tmp_path: Path) -> None:
    release = tmp_path / "release"
    started = tmp_path / "started"
    with Pool(client=client):
        future = tasks.block_until(str(release), str(started))
        assert wait_until(started.exists, 30)
        assert future.cancel()
        done, _ = wait([future], timeout=30, return_when=FIRST_COMPLETED)
        assert done == {future}
        with pytest.raises(CancelledError):
            future.result()

        def scheduler_keys(dask_scheduler: Any) -> list[str]:
            return [str(k) for k in dask_scheduler.tasks if "block_until" in str(k)]

        # The scheduler forgot the task although its call still runs.
        assert wait_until(lambda: not client.run_on_scheduler(scheduler_keys), 30)
        release.touch()


def test_leaving_by_an_exception_cancels_the_unfinished_work(client: Any) -> None:
    futures: list[Future[int]] = []

    def submit_then_fail() -> None:
        with Pool(client=client):
            futures.extend(tasks.sleeper(0.2, i) for i in range(40))
            raise KeyError("leave")

    with pytest.raises(KeyError):
        submit_then_fail()
    assert all(f.done() for f in futures)
    assert any(f.cancelled() for f in futures)
    for f in futures:
        assert f.cancelled() or f.result() == futures.index(f)


def test_cancelled_futures_are_at_once_done_for_wait_and_as_completed(client: Any) -> None:
    pool = Pool(client=client)
    futures = [tasks.sleeper(0.2, i) for i in range(40)]
    pool.shutdown(wait=False, cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    assert cancelled
    # Not notified, these would count as done only once Dask reported each
    # task's cancellation back.
    assert not wait(cancelled, timeout=5).not_done
    assert set(as_completed(cancelled, timeout=5)) == set(cancelled)
    assert not wait(futures, timeout=60).not_done


def test_results_are_released_on_the_workers_once_fetched(client: Any) -> None:
    with Pool(client=client):
        futures = [tasks.add(i) for i in range(10)]
        assert gather(futures) == list(range(10))

    def held(dask_scheduler: Any) -> list[str]:
        return [str(k) for k in dask_scheduler.tasks if str(k).startswith("add-")]

    # The caller still holds its futures; Dask need not keep their results.
    assert wait_until(lambda: not client.run_on_scheduler(held), 30)
    assert len(futures) == 10


# ------------------------------------------------------------------ faults


def test_exception_keeps_its_type_and_traceback(client: Any) -> None:
    with Pool(client=client):
        future = tasks.fail("boom")
        exc = future.exception()
    assert type(exc) is tasks.TaskFailedError
    assert exc.args == ("boom",)
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "failing_subtask" in str(exc.__cause__)
    assert "raise TaskFailedError(message)" in str(exc.__cause__)


def test_an_unpicklable_exception_arrives_as_remote_task_error(client: Any) -> None:
    with Pool(client=client):
        error = tasks.fail_unpicklably("no way back").exception()
    assert isinstance(error, RemoteTaskError)
    assert error.type_name == "tests.dask_tasks.UnpicklableError"
    assert error.message == "no way back"
    assert "fail_unpicklably" in error.traceback_text
    assert "raise UnpicklableError(message)" in error.traceback_text


def test_the_core_never_imports_dask() -> None:
    # Dask is the optional extra nestpool[dask]: nothing imports it unless a
    # client is handed to Pool.
    script = (
        "import sys\n"
        "import nestpool\n"
        "from tests import helpers\n"
        "with nestpool.Pool(processes=1, threads=2):\n"
        "    assert helpers.fan_out([1, 2]).result() == 6\n"
        "    assert list(helpers.double.map([1, 2])) == [2, 4]\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('distributed', 'dask')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_unpicklable_argument_and_result_fail_their_task(client: Any) -> None:
    with Pool(client=client):
        bad_arg = tasks.add(threading.Lock())
        bad_result = tasks.unpicklable_result()
        good = tasks.add(1, 1)
        assert good.result() == 2
    arg_error = bad_arg.exception()
    assert isinstance(arg_error, TaskPicklingError)
    assert arg_error.direction == "argument"
    result_error = bad_result.exception()
    assert isinstance(result_error, TaskPicklingError)
    assert "add" in str(arg_error)
    assert "unpicklable_result" in str(result_error)
    assert isinstance(result_error, pickle.PicklingError)


def test_killed_worker_fails_its_task_with_worker_died_error(client: Any) -> None:
    with Pool(client=client):
        before = [tasks.add(i) for i in range(4)]
        assert gather(before) == [0, 1, 2, 3]
        # It kills every worker it runs on: after allowed-failures (1) reruns,
        # Dask gives up with KilledWorker, which arrives as WorkerDiedError.
        error = tasks.kill_self().exception()
        # Finished work keeps its values, and the pool goes on.
        assert gather(before) == [0, 1, 2, 3]
        assert tasks.add(2, 3).result() == 5
    assert isinstance(error, WorkerDiedError)
    assert isinstance(error, BrokenProcessPool)
    assert isinstance(error.__cause__, distributed.KilledWorker)
    assert "kill_self" in str(error)
    assert "died while running it" in str(error)  # Dask's own message, kept
    assert error.task_name == "kill_self"
    assert error.pid is not None
    client.wait_for_workers(2, timeout=60)


def test_killed_worker_reruns_its_tasks_when_dask_allows_it(client: Any, tmp_path: Path) -> None:
    # One death (allowed-failures=1): the killer, and whatever else was on
    # that worker, is rerun elsewhere; nothing fails.
    with Pool(client=client):
        others = [tasks.sleeper(0.1, i) for i in range(8)]
        killer = tasks.kill_self(str(tmp_path / "marker"))
        assert killer.result() == "rerun"
        assert gather(others) == list(range(8))
    client.wait_for_workers(2, timeout=60)


def test_timeout_fails_the_task_with_task_timeout_error(client: Any) -> None:
    with Pool(client=client):
        late = tasks.timed(5.0)
        on_time = tasks.timed(0.01)
        error = late.exception()
        assert on_time.result() == 0.01
    assert isinstance(error, TaskTimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.timeout == 0.5
    assert "timed" in str(error)


def test_options_variants_run_on_dask(client: Any) -> None:
    """A variant's timeout holds on Dask; its retries are left to the
    scheduler (docs/dask.md), and a call that raised is not run again."""
    with Pool(client=client):
        quick = tasks.timed.options(timeout=10.0, retries=2)
        assert quick(0.01).result() == 0.01
        assert list(tasks.add.options(retries=1).map([1, 2], [3, 4])) == [4, 6]
        error = tasks.timed.options(timeout=0.2, retries=2)(5.0).exception()
    assert isinstance(error, TaskTimeoutError)
    assert error.timeout == 0.2


def test_local_options_are_refused_with_a_client(client: Any) -> None:
    for options in (
        {"processes": 2},
        {"start_method": "spawn"},
        {"tasks_per_process": 2},
        {"initializer": print},
        {"max_tasks_per_child": 3},
    ):
        with pytest.raises(ValueError, match=next(iter(options))):
            Pool(client=client, **options)
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        Pool(client=object())


CTRL_C_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from distributed import Client
from nestpool import Pool
from tests import dask_tasks as tasks

release, started = sys.argv[3], sys.argv[4]
client = Client(sys.argv[1])
try:
    with Pool(client=client):
        futures = [tasks.block_until(release, started) for _ in range(2)]
        while not Path(started).exists():
            time.sleep(0.01)
        print("ready", flush=True)
        futures[0].result()
except KeyboardInterrupt:
    print("interrupted", flush=True)
finally:
    client.close()
"""


def test_ctrl_c_leaves_the_with_block_and_cancels_the_dask_tasks(
    client: Any, tmp_path: Path
) -> None:
    import signal

    release, started = tmp_path / "release", tmp_path / "started"
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    address = client.scheduler.address
    process = subprocess.Popen(
        [sys.executable, str(script), address, str(ROOT), str(release), str(started)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "interrupted" in out

        def scheduler_keys(dask_scheduler: Any) -> list[str]:
            return [str(k) for k in dask_scheduler.tasks if "block_until" in str(k)]

        assert wait_until(lambda: not client.run_on_scheduler(scheduler_keys), 30)
    finally:
        release.touch()  # the abandoned calls end on the workers
        if process.poll() is None:
            process.kill()
            process.wait()


# ------------------------------------------------------------------ examples


@pytest.mark.slow
@pytest.mark.parametrize(
    ("example", "switch"),
    [("collate.py", "--scheduler"), ("nested.py", "--scheduler"), ("collate.py", "--dask")],
)
def test_examples_run_on_dask(client: Any, example: str, switch: str) -> None:
    # --scheduler: the module's running cluster; --dask: a LocalCluster of its own.
    where = [switch, client.scheduler.address] if switch == "--scheduler" else [switch]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example), *where],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The tasks' own prints appear on the workers' consoles, not here.
    assert "Main Done" in result.stdout


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "CustomBaseError"])
def test_one_item_of_a_dask_chunk_fails_alone(client: Any, kind: str, tmp_path: Path) -> None:
    from . import fault_tasks

    log = tmp_path / "ran"
    with Pool(client=client):
        mapped = fault_tasks.raise_at_three_task.map(
            range(6), [kind] * 6, [str(log)] * 6, chunksize=6
        )
        taken: list[int] = []
        raised = ""
        try:
            for value in mapped:
                taken.append(value)  # noqa: PERF402 - what came before the error
        except BaseException as exc:
            raised = type(exc).__name__
        assert (taken, raised) == ([0, 10, 20], kind)
        assert sorted(int(line) for line in log.read_text().split()) == [0, 1, 2, 3, 4, 5]
