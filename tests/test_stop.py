"""Stopping a running process task: ``nestpool.stop(future)``, and
``cancel()`` under ``stop_on_cancel=True`` (so that asyncio's cancellation
reaches the worker). The worker running it is killed and replaced, the future
ends cancelled at once, nothing else is lost; by default ``cancel()`` keeps
the standard library's meaning.

Each stopped task would leave a ``.done`` file if it ran to its end: none
may appear. Tests wait on ready files, futures and ``wait_until``, never on
sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import pytest

import nestpool
from nestpool import Pool, process_task
from tests import stop_tasks as st
from tests.conftest import record_started_workers, wait_until
from tests.fault_tasks import read_ready, read_runs

pytestmark = pytest.mark.timeout(90)


def _started(directory: Path, *names: str) -> list[int]:
    """Wait for the tasks ``names`` to say started; their workers' pids."""
    assert wait_until(lambda: all(read_ready(str(directory), n) for n in names), 60)
    return [read_ready(str(directory), n) or 0 for n in names]


def _open(directory: Path, name: str) -> None:
    (directory / f"{name}.gate").write_text("")


def _replaced(pool: Pool, pid: int, count: int) -> bool:
    """Wait until ``pid`` is gone from the pool and ``count`` workers live
    (a pool with nothing to run starts its replacement with the next task)."""
    return wait_until(
        lambda: pid not in pool.worker_pids() and len(pool.worker_pids()) == count, 30
    )


def _still_works(pool: Pool, directory: Path) -> set[int]:
    """Run a map on ``pool``; the pids that ran it."""
    directory.mkdir()
    n = 4
    assert list(st.map_item.map(range(n), [-1] * n, [str(directory)] * n)) == [0, 10, 20, 30]
    return {pid for _, pid in read_runs(str(directory))}


# ------------------------------------------------------------ a single task


def test_stopping_a_running_task_cancels_it_and_replaces_its_worker(
    start_method: str, tmp_path: Path
) -> None:
    with Pool(processes=2, start_method=start_method) as pool:
        started = record_started_workers(pool)
        stopped = st.gated(str(tmp_path), "stopped")
        other = st.gated(str(tmp_path), "other")
        pid, other_pid = _started(tmp_path, "stopped", "other")
        assert pid != other_pid
        assert stopped.cancel() is False  # the standard library's meaning
        assert stopped.running()

        assert nestpool.stop(stopped) is True
        assert stopped.cancelled()
        # Done at once for wait() and as_completed(), not at their timeout.
        done, _ = concurrent.futures.wait([stopped], timeout=0)
        assert done == {stopped}
        with pytest.raises(concurrent.futures.CancelledError):
            stopped.result(timeout=0)

        assert _replaced(pool, pid, 2)
        assert len(started) == 3  # the replacement
        assert other_pid in pool.worker_pids()  # the other task's worker lives on
        _open(tmp_path, "other")
        assert other.result(timeout=60) == other_pid
        # The pool goes on, on the replacement too.
        assert sorted(st.map_item.map(range(4), [-1] * 4, [str(tmp_path)] * 4)) == [0, 10, 20, 30]
        assert nestpool.stop(other) is False  # done: nothing to stop
    assert not (tmp_path / "stopped.done").exists()


def test_stop_before_the_start_cancels_and_after_the_end_does_nothing(tmp_path: Path) -> None:
    with Pool(processes=1) as pool:
        first = st.gated(str(tmp_path), "first")
        queued = st.gated(str(tmp_path), "queued")
        (pid,) = _started(tmp_path, "first")
        assert nestpool.stop(queued) is True  # not started: a plain cancel
        assert queued.cancelled()
        _open(tmp_path, "first")
        assert first.result(timeout=60) == pid
        assert nestpool.stop(first) is False
        assert pool.worker_pids() == [pid]  # nobody was killed
    assert read_ready(str(tmp_path), "queued") is None


def test_stop_of_a_future_it_cannot_stop_is_a_cancel() -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()
    assert nestpool.stop(future) is False  # not a process task's: cannot be stopped
    pending: concurrent.futures.Future[int] = concurrent.futures.Future()
    assert nestpool.stop(pending) is True
    assert pending.cancelled()
    with Pool(processes=0):  # inline: done at the call
        assert nestpool.stop(st.map_item(1, -1, "/nonexistent-never-logged")) is False


def test_the_other_tasks_of_a_stopped_worker_run_again_without_counting_a_try(
    tmp_path: Path,
) -> None:
    with Pool(processes=1, tasks_per_process=2) as pool:
        stopped = st.gated(str(tmp_path), "stopped")
        sibling = st.gated.options(retries=0)(str(tmp_path), "sibling")
        pid, sibling_pid = _started(tmp_path, "stopped", "sibling")
        assert pid == sibling_pid  # one worker runs both
        (tmp_path / "sibling").unlink()
        assert nestpool.stop(stopped)
        # The sibling runs again, from the start, on the replacement (it had
        # no retries= to spend: none is counted).
        (new_pid,) = _started(tmp_path, "sibling")
        assert new_pid != pid
        _open(tmp_path, "sibling")
        assert sibling.result(timeout=60) == new_pid
        assert pool.worker_pids() == [new_pid]
    assert stopped.cancelled()
    assert not (tmp_path / "stopped.done").exists()


# ------------------------------------------------------------ cancel() opt-in


def test_cancel_stops_a_running_call_only_with_stop_on_cancel(
    start_method: str, tmp_path: Path
) -> None:
    with Pool(processes=2, start_method=start_method) as pool:
        plain = st.gated(str(tmp_path), "plain")
        stoppable = st.gated.options(stop_on_cancel=True)(str(tmp_path), "stoppable")
        plain_pid, pid = _started(tmp_path, "plain", "stoppable")
        assert plain.cancel() is False
        assert stoppable.cancel() is True
        assert stoppable.cancelled()
        assert _replaced(pool, pid, 2)  # replaced at once: there is work
        assert plain_pid in pool.worker_pids()
        _open(tmp_path, "plain")
        assert plain.result(timeout=60) == plain_pid
    assert not (tmp_path / "stoppable.done").exists()
    assert st.gated.options(stop_on_cancel=True).stop_on_cancel
    assert not st.gated.stop_on_cancel


def test_stop_on_cancel_is_an_option_of_the_decorator_and_checked() -> None:
    assert st.gated_stoppable.stop_on_cancel
    assert not st.gated_stoppable.options(stop_on_cancel=False).stop_on_cancel
    assert st.gated_stoppable.options(retries=1).stop_on_cancel  # kept
    with pytest.raises(TypeError, match="stop_on_cancel must be a bool"):
        process_task(stop_on_cancel=1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="stop_on_cancel must be a bool"):
        st.gated.options(stop_on_cancel="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------ a map


def _map(
    task: nestpool.ProcessTask[[int, int, str], int], held: int, directory: Path
) -> nestpool.MapIterator[int]:
    n = 8
    return task.map(range(n), [held] * n, [str(directory)] * n, chunksize=4)


def test_closing_a_stop_on_cancel_map_stops_its_running_item(
    start_method: str, tmp_path: Path
) -> None:
    """Items 0-3 are one chunk, 4-7 another; item 5 hangs. Closing the map
    stops the worker running it: item 5 never ends, items 6 and 7 never
    run, and nothing runs twice (retries= does not re-run a stopped item)."""
    with Pool(processes=1, start_method=start_method) as pool:
        task = st.map_item.options(stop_on_cancel=True)
        with _map(task, 5, tmp_path) as values:
            assert [next(values) for _ in range(4)] == [0, 10, 20, 30]
            (pid,) = _started(tmp_path, "held")
        assert _replaced(pool, pid, 0)
        assert pid not in _still_works(pool, tmp_path / "after")  # on the replacement
    runs = [item for item, _ in read_runs(str(tmp_path))]
    assert runs == [0, 1, 2, 3, 4, 5]  # each once; 6 and 7 never started
    assert not (tmp_path / "held.done").exists()


def test_closing_a_plain_map_lets_its_running_item_finish(tmp_path: Path) -> None:
    with Pool(processes=1) as pool:
        with _map(st.map_item, 5, tmp_path) as values:
            assert [next(values) for _ in range(4)] == [0, 10, 20, 30]
            (pid,) = _started(tmp_path, "held")
        _open(tmp_path, "held")
        assert wait_until(lambda: (tmp_path / "held.done").exists(), 60)
        assert pool.worker_pids() == [pid]


# ------------------------------------------------------------ asyncio


def test_asyncio_cancellation_reaches_the_worker_with_stop_on_cancel(
    start_method: str, tmp_path: Path
) -> None:
    async def main(pool: Pool) -> None:
        future = st.gated_stoppable(str(tmp_path), "waited")
        waited = asyncio.ensure_future(asyncio.wrap_future(future))
        loop = asyncio.get_running_loop()
        (pid,) = await loop.run_in_executor(None, _started, tmp_path, "waited")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(waited, 0.01)
        assert future.cancelled()
        assert await loop.run_in_executor(None, _replaced, pool, pid, 0)

        # run_in_executor: the pool's own future, cancelled by asyncio.
        step = loop.run_in_executor(pool, st.gated_stoppable, str(tmp_path), "executor")
        (pid,) = await loop.run_in_executor(None, _started, tmp_path, "executor")
        step.cancel()
        assert await loop.run_in_executor(None, _replaced, pool, pid, 0)
        assert pid not in await loop.run_in_executor(None, _still_works, pool, tmp_path / "after")

    with Pool(processes=1, start_method=start_method) as pool:
        asyncio.run(main(pool))
    assert not (tmp_path / "waited.done").exists()
    assert not (tmp_path / "executor.done").exists()


def test_asyncio_cancellation_leaves_a_plain_task_running(tmp_path: Path) -> None:
    async def main(pool: Pool) -> int:
        future = st.gated(str(tmp_path), "waited")
        loop = asyncio.get_running_loop()
        waited = asyncio.ensure_future(asyncio.wrap_future(future))
        (pid,) = await loop.run_in_executor(None, _started, tmp_path, "waited")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(waited, 0.01)
        assert not future.cancelled()  # the standard library's meaning
        _open(tmp_path, "waited")
        assert await asyncio.wrap_future(future) == pid
        assert pool.worker_pids() == [pid]
        return pid

    with Pool(processes=1) as pool:
        pid = asyncio.run(main(pool))
    assert (tmp_path / "waited.done").read_text() == str(pid)


def test_cancelling_a_task_in_async_with_amap_stops_its_running_item(
    start_method: str, tmp_path: Path
) -> None:
    task = st.map_item.options(stop_on_cancel=True)

    async def consume() -> None:
        async with task.amap(range(8), [5] * 8, [str(tmp_path)] * 8, chunksize=4) as items:
            async for _value in items:
                pass

    async def main(pool: Pool) -> int:
        consumer = asyncio.ensure_future(consume())
        loop = asyncio.get_running_loop()
        (pid,) = await loop.run_in_executor(None, _started, tmp_path, "held")
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert await loop.run_in_executor(None, _replaced, pool, pid, 0)
        return pid

    with Pool(processes=1, start_method=start_method) as pool:
        pid = asyncio.run(main(pool))
        assert pid not in _still_works(pool, tmp_path / "after")
    runs = [item for item, _ in read_runs(str(tmp_path))]
    assert runs == [0, 1, 2, 3, 4, 5]
    assert not (tmp_path / "held.done").exists()
