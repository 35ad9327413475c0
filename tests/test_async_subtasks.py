"""Async subtasks: ``@thread_subtask`` on an ``async def``.

The routing table with each process's own event loop in place of its thread
pool (no pool, from inside a running loop too; a pool open here; inside a
worker under every start method), the loop made once per process and kept,
maps (ordered, unordered, ``buffersize``, overlapping waits), cancelling,
exceptions, the ``RuntimeError`` that replaces a deadlock on the loop's own
thread, and thread and async subtasks mixed in one process task.
"""

from __future__ import annotations

import asyncio
import os
import threading
import traceback
from concurrent.futures import CancelledError, Future, as_completed, wait
from pathlib import Path
from typing import Any

import pytest

from nestpool import AsyncSubtask, Pool, _subtask_loop, gather, process_task, thread_subtask

from . import async_tasks as tasks

pytestmark = pytest.mark.timeout(60)

LOOP_PREFIX = "nestpool-loop-"


# ------------------------------------------------------------------ routing


def test_an_async_def_makes_an_async_subtask() -> None:
    assert isinstance(tasks.double, AsyncSubtask)
    assert tasks.double.__name__ == "double"
    assert tasks.double.task_name == "double"


def test_no_pool_runs_now_and_returns_a_completed_future() -> None:
    future = tasks.double(21)
    assert isinstance(future, Future)
    assert future.done()
    assert future.result() == 42
    info = tasks.where().result()
    assert info["pid"] == os.getpid()
    assert info["thread"].startswith(LOOP_PREFIX)


def test_no_pool_from_inside_a_running_loop_runs_now() -> None:
    async def main() -> tuple[bool, int, dict[str, Any]]:
        future = tasks.double(5)
        # not the caller's loop: the process's own
        return future.done(), future.result(), tasks.where().result()

    done, value, info = asyncio.run(main())
    assert done
    assert value == 10
    assert info["thread"].startswith(LOOP_PREFIX)
    assert info["ident"] != threading.get_ident()


def test_sync_runs_the_coroutine_to_completion() -> None:
    assert tasks.double.sync(4) == 8

    async def main() -> int:
        return tasks.double.sync(5)

    assert asyncio.run(main()) == 10


def test_a_pool_open_schedules_on_this_process_loop() -> None:
    release = threading.Event()

    @thread_subtask
    async def held() -> dict[str, Any]:
        await asyncio.wrap_future(_future_set_by(release))
        return {"thread": threading.current_thread().name, "pid": os.getpid()}

    with Pool(processes=1, threads=1):
        future = held()
        assert not future.done()  # scheduled, not run at the call
        release.set()
        info = future.result()
    assert info["pid"] == os.getpid()
    assert info["thread"].startswith(LOOP_PREFIX)


def _future_set_by(event: threading.Event) -> Future[None]:
    future: Future[None] = Future()

    def setter() -> None:
        event.wait(30)
        future.set_result(None)

    threading.Thread(target=setter, daemon=True).start()
    return future


def test_the_loop_is_one_per_process_and_persists() -> None:
    first = tasks.where().result()
    with Pool(processes=1, threads=2):
        during = gather([tasks.where() for _ in range(5)])
    after = tasks.where().result()
    assert len({(i["ident"], i["loop"]) for i in [first, *during, after]}) == 1


def test_inside_a_worker_on_that_workers_own_loop(start_method: str) -> None:
    # The parent's loop exists before a fork: the child must make its own.
    parent = tasks.where().result()
    with Pool(processes=1, threads=1, start_method=start_method):
        results = [tasks.where_from_task(4).result() for _ in range(3)]
    worker_pids = {r["pid"] for r in results}
    assert len(worker_pids) == 1
    assert worker_pids != {os.getpid()}
    subs = [sub for r in results for sub in r["subs"]]
    assert {sub["pid"] for sub in subs} == worker_pids
    assert all(sub["thread"].startswith(LOOP_PREFIX) for sub in subs)
    # one loop, on one thread, across calls and tasks in that worker
    assert len({(sub["ident"], sub["loop"]) for sub in subs}) == 1
    assert parent["thread"] != subs[0]["thread"]


def test_threads_zero_runs_async_subtasks_now() -> None:
    with Pool(processes=0, threads=0):
        future = tasks.double(3)
        assert future.done()
        assert future.result() == 6


# ------------------------------------------------------------------ collating


@pytest.mark.parametrize("pool", [False, True])
def test_map_ordered_and_unordered(pool: bool) -> None:
    with Pool(processes=1, threads=1) if pool else _no_pool():
        assert list(tasks.double.map(range(50))) == [2 * x for x in range(50)]
        # later items finish first
        seconds = [0.05 * (3 - x) for x in range(4)] if pool else [0.0] * 4
        values = list(tasks.nap.map(seconds, range(4), ordered=False))
        assert sorted(values) == [0, 1, 2, 3]
        if pool:
            assert values == [3, 2, 1, 0]
        assert gather([tasks.double(x) for x in range(5)]) == [0, 2, 4, 6, 8]


class _no_pool:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_amap_and_progress() -> None:
    seen: list[int] = []

    async def main() -> list[int]:
        async with tasks.double.amap(range(6), progress=seen.append) as values:
            return [v async for v in values]

    with Pool(processes=1, threads=1):
        assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]
        assert list(tasks.double.map(range(3), progress=seen.append)) == [0, 2, 4]
    assert seen


@pytest.mark.parametrize("buffersize", [1, 3, 10])
def test_buffersize_bounds_the_coroutines_in_flight(buffersize: int) -> None:
    with Pool(processes=1, threads=1):
        values, most = tasks.most_in_flight(40, buffersize, 0.01).result()
    assert values == list(range(40))
    assert 1 <= most <= buffersize


def test_without_buffersize_the_waits_overlap_whatever_threads() -> None:
    with Pool(processes=1, threads=1):
        values, most = tasks.most_in_flight(200, None, 0.2).result()
        elapsed = tasks.timed_naps(200, 0.2).result()
    assert values == list(range(200))
    assert most == 200
    # 200 sleeps of 0.2 s one after the other take 40 s; overlapped, about
    # 0.2 s (a generous bound: this machine is shared).
    assert elapsed < 5, elapsed


def test_an_endless_input_is_read_lazily() -> None:
    def endless() -> Any:
        n = 0
        while True:
            yield n
            n += 1

    with Pool(processes=1, threads=1):
        values = tasks.double.map(endless())
        assert [next(values) for _ in range(5)] == [0, 2, 4, 6, 8]
        values.close()


# ------------------------------------------------------------------ cancelling


def test_cancelling_the_future_cancels_the_coroutine() -> None:
    started, cancelled = threading.Event(), threading.Event()
    with Pool(processes=1, threads=1):
        future = tasks.wait_then_note_cancel(started, cancelled)
        assert started.wait(10)
        assert future.cancel()
        assert cancelled.wait(10)
        assert future.cancelled()
        with pytest.raises(CancelledError):
            future.result()
        # seen done at once by the standard library's waits
        done, _ = wait([future], timeout=5)
        assert done == {future}
        assert list(as_completed([future], timeout=5)) == [future]


def test_cancelling_in_a_worker_cancels_the_coroutine() -> None:
    with Pool(processes=1, threads=1):
        assert tasks.cancel_in_worker().result() == (True, True)


def test_closing_a_map_early_cancels_its_coroutines() -> None:
    with Pool(processes=1, threads=1):
        assert tasks.close_map_in_worker(5).result() == (5, 5)


# ------------------------------------------------------------------ exceptions


def test_exceptions_arrive_as_themselves_with_their_traceback() -> None:
    with Pool(processes=1, threads=1):
        error = tasks.explode("here").exception()
        assert type(error) is tasks.Boom
        assert str(error) == "here"
        frames = [f.name for f in traceback.extract_tb(error.__traceback__)]
        assert "explode" in frames
        assert "_raise_boom" in frames
        with pytest.raises(tasks.Boom, match="here"):
            list(tasks.explode.map(["here"]))
        # inside a worker: the worker-side traceback as __cause__
        with pytest.raises(tasks.Boom, match="in a worker") as info:
            tasks.raise_in_worker().result()
        assert "_raise_boom" in str(info.value.__cause__)


def test_no_pool_keeps_the_exception_in_the_future() -> None:
    future = tasks.explode("now")  # never raises at the call
    assert future.done()
    assert type(future.exception()) is tasks.Boom
    with pytest.raises(tasks.Boom):
        tasks.explode.sync("now")


# ------------------------------------------------------------------ the loop's own thread


@pytest.mark.parametrize("pool", [False, True])
def test_waiting_on_the_loops_own_thread_raises_and_says_what_to_do(pool: bool) -> None:
    with Pool(processes=1, threads=1) if pool else _no_pool():
        message = tasks.result_on_loop().result()
        assert "await asyncio.wrap_future(future)" in message
        assert "gather()" in tasks.gather_on_loop().result()
        message = tasks.map_on_loop().result()
        assert "amap" in message
        assert tasks.amap_on_loop(4).result() == [0, 2, 4, 6]


def test_sync_on_the_loops_own_thread_raises() -> None:
    @thread_subtask
    async def calls_sync() -> str:
        try:
            tasks.double.sync(1)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "await asyncio.wrap_future(double(...))" in calls_sync().result()


def test_a_coroutine_awaits_async_and_thread_subtasks() -> None:
    with Pool(processes=1, threads=2):
        assert tasks.nested_double(20).result() == 41
        # a thread subtask goes to the thread pool, not the loop's thread
        name = tasks.thread_subtask_from_loop().result()
        assert name.startswith("nestpool-"), name
        assert not name.startswith(LOOP_PREFIX), name
    assert tasks.nested_double(1).result() == 3


# ------------------------------------------------------------------ mixing


def test_a_process_task_mixes_thread_and_async_subtasks(start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method):
        result = tasks.mixed(6).result()
    assert all(s["pid"] == result["pid"] for s in result["async"] + result["threads"])
    assert all(s["thread"].startswith(LOOP_PREFIX) for s in result["async"])
    assert not any(s["thread"].startswith(LOOP_PREFIX) for s in result["threads"])
    assert result["nested"] == [2 * x + 1 for x in range(6)]
    assert result["unordered"] == [2 * x for x in range(6)]


def test_process_task_on_an_async_def_is_a_type_error() -> None:
    async def crawl() -> None: ...

    with pytest.raises(TypeError, match="@thread_subtask"):
        process_task(crawl)


def test_fork_child_makes_its_own_loop() -> None:
    parent = _subtask_loop.this_process_loop()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ok = (
                _subtask_loop.this_process_loop() is not parent
                and tasks.double(2).result(timeout=10) == 4
            )
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)


# ------------------------------------------------------------ pool exit


def test_leaving_the_pool_waits_for_its_async_subtasks(tmp_path: Path) -> None:
    # As for thread subtasks: work called under the pool is the pool's work.
    note = tmp_path / "note"
    with Pool(processes=1, threads=2):
        future = tasks.note_after(0.3, str(note))
        mapped = tasks.nap.map([0.2, 0.2], ["a", "b"])
    assert future.done()
    assert future.result() == "noted"
    assert note.read_text() == f"{os.getpid()}\n"
    assert list(mapped) == ["a", "b"]


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_a_worker_waits_for_its_async_subtasks_before_it_exits(
    start_method: str, tmp_path: Path
) -> None:
    note = tmp_path / "note"
    with Pool(processes=1, threads=2, start_method=start_method):
        pid = tasks.fire_and_forget(str(note)).result(timeout=30)
    # The task returned at once; its worker's normal exit let the subtask end.
    assert note.read_text() == f"{pid}\n"
