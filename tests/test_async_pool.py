"""``async with Pool(...)``: entering and leaving never block the event loop,
leaving waits for the work as ``with`` does, and cancelling the task that holds
the pool (a timeout, Ctrl-C under ``asyncio.run``) stops the workers at once.

"Never blocks the loop" is tested without timing: the work itself depends on
the loop (a gate that only a coroutine on the same loop opens), so a blocking
enter or exit would never finish and the test would time out. Ctrl-C is a real
SIGINT to a script in a subprocess, under fork, forkserver and spawn.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, PoolClosedError, WorkerDiedError
from tests import fault_tasks
from tests.conftest import wait_until
from tests.test_interrupt import CTRL_C_BOUND, Script, _gone
from tests.ux_helpers import cube, wait_for_file

pytestmark = pytest.mark.timeout(60)

#: how long leaving a cancelled block may take: about a second is the
#: promise; the margin is for a loaded CI machine.
CANCEL_BOUND = 2.0


async def _until_ready(directory: Path, *names: str) -> None:
    """Wait, without blocking the loop, until the tasks ``names`` have started
    (``fault_tasks.hold`` writes a ready file first)."""
    while not all((directory / name).exists() for name in names):
        await asyncio.sleep(0.01)


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if not _gone(pid)]


# ------------------------------------------------------------- the event loop


def test_entering_starts_the_engine_off_the_loop(
    start_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's start waits for a gate only the loop opens: had it run on
    # the loop's thread, the gate would never open.
    gate = threading.Event()
    threads: list[str] = []
    start_engine = Pool._start_engine

    def gated(pool: Pool) -> None:
        threads.append(threading.current_thread().name)
        assert gate.wait(30), "the loop did not run while the pool was entered"
        start_engine(pool)

    monkeypatch.setattr(Pool, "_start_engine", gated)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            gate.set()
            await asyncio.sleep(0)

    async def main() -> int:
        ticking = asyncio.get_running_loop().create_task(ticker())
        await asyncio.sleep(0)
        async with Pool(processes=2, start_method=start_method) as pool:
            entered = ticks
            # The workers start with the first task, off the loop, as with `with`.
            values = await asyncio.gather(*(asyncio.wrap_future(cube(i)) for i in range(4)))
            assert ticks > entered
            assert len(pool.worker_pids()) == 2
        ticking.cancel()
        return sum(values)

    assert asyncio.run(main()) == 0 + 1 + 8 + 27
    assert len(threads) == 1
    assert threads[0] != "MainThread"


def test_leaving_waits_for_the_work_without_blocking_the_loop(
    start_method: str, tmp_path: Path
) -> None:
    # The last task waits for a gate file that a coroutine on the loop makes
    # only once the block is being left: a blocking exit would wait forever.
    gate = tmp_path / "gate"
    leaving = asyncio.Event()
    ticks = 0

    async def open_gate() -> None:
        nonlocal ticks
        await leaving.wait()
        for _ in range(3):
            ticks += 1
            await asyncio.sleep(0)
        gate.touch()

    async def main() -> list[Future[Any]]:
        opener = asyncio.get_running_loop().create_task(open_gate())
        async with Pool(processes=2, start_method=start_method):
            futures: list[Future[Any]] = [cube(i) for i in range(6)]
            futures.append(wait_for_file(str(gate), 99))
            futures.append(fault_tasks.slow_square(3, 1.0))
            leaving.set()
        await opener
        return futures

    futures = asyncio.run(main())
    # Every submitted task finished before the block was left.
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures[:7]] == [i**3 for i in range(6)] + [99]
    assert futures[7].result()[0] == 9
    assert ticks == 3


def test_leaving_by_an_exception_cancels_what_has_not_started(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    leaving = asyncio.Event()

    async def open_gate() -> None:
        await leaving.wait()
        gate.touch()

    async def main(futures: list[Future[int]]) -> None:
        opener = asyncio.get_running_loop().create_task(open_gate())
        try:
            async with Pool(processes=1, start_method="fork"):
                futures.append(fault_tasks.hold_until(str(tmp_path), "running", "gate"))
                futures.extend(fault_tasks.square(i) for i in range(3))
                await _until_ready(tmp_path, "running")
                leaving.set()
                raise ValueError("the block failed")
        finally:
            await opener

    futures: list[Future[int]] = []
    with pytest.raises(ValueError, match="the block failed"):
        asyncio.run(main(futures))
    # The running task finished (the gate opened while the exit waited);
    # the others never started.
    assert futures[0].result() > 0
    assert all(f.cancelled() for f in futures[1:])


# ---------------------------------------------------------------- cancelling


class _Holder:
    """A block that holds a pool with two long tasks running and one queued;
    ``started`` is set once both run (their worker pids recorded)."""

    def __init__(self, directory: Path, start_method: str) -> None:
        self.directory = directory
        self.start_method = start_method
        self.pids: list[int] = []
        self.futures: list[Future[int]] = []
        self.started = asyncio.Event()

    async def hold(self) -> None:
        async with Pool(processes=2, start_method=self.start_method) as pool:
            self.futures.extend(fault_tasks.hold(str(self.directory), f"t{i}") for i in range(2))
            self.futures.append(fault_tasks.square(5))  # queued behind the two
            await _until_ready(self.directory, "t0", "t1")
            self.pids.extend(pool.worker_pids())
            self.started.set()
            await asyncio.gather(*(asyncio.wrap_future(f) for f in self.futures))

    def check_stopped(self) -> None:
        assert len(self.pids) == 2
        # The block was left after the workers were stopped: none remains.
        assert _alive(self.pids) == []
        assert all(f.done() for f in self.futures)
        assert all(isinstance(f.exception(), WorkerDiedError) for f in self.futures[:2])
        assert self.futures[2].cancelled()


def test_cancelling_the_holding_task_stops_the_workers_at_once(
    start_method: str, tmp_path: Path
) -> None:
    holder = _Holder(tmp_path, start_method)

    async def main() -> float:
        holding = asyncio.get_running_loop().create_task(holder.hold())
        await holder.started.wait()
        cancelled = time.monotonic()
        holding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holding
        return time.monotonic() - cancelled

    took = asyncio.run(main())
    print(f"\ncancel ({start_method}): left the block in {took * 1000:.1f} ms")
    assert took < CANCEL_BOUND
    holder.check_stopped()


def test_a_timeout_on_the_holding_task_stops_the_workers_at_once(tmp_path: Path) -> None:
    holder = _Holder(tmp_path, "fork")
    # A deadline well past the workers' start, well before the tasks' end.
    deadline = 3.0

    async def main() -> float:
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(holder.hold(), timeout=deadline)
        assert holder.started.is_set()
        return time.monotonic() - start - deadline

    assert asyncio.run(main()) < CANCEL_BOUND
    holder.check_stopped()


def test_a_plain_with_in_a_cancelled_task_stops_the_workers_too(tmp_path: Path) -> None:
    pids: list[int] = []
    started = asyncio.Event()

    async def hold_pool() -> None:
        with Pool(processes=1, start_method="fork") as pool:
            future = fault_tasks.hold(str(tmp_path), "t")
            await _until_ready(tmp_path, "t")
            pids.extend(pool.worker_pids())
            started.set()
            await asyncio.wrap_future(future)

    async def main() -> float:
        holder = asyncio.get_running_loop().create_task(hold_pool())
        await started.wait()
        cancelled = time.monotonic()
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        return time.monotonic() - cancelled

    assert asyncio.run(main()) < CANCEL_BOUND
    assert len(pids) == 1
    assert _alive(pids) == []


def test_cancelling_while_entering_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine's start is held until the entering task has been cancelled:
    # the pool is closed, and the start, when it goes on, starts nothing.
    in_start = threading.Event()
    release = threading.Event()
    start_engine = Pool._start_engine

    def held(pool: Pool) -> None:
        in_start.set()
        release.wait(30)
        start_engine(pool)

    monkeypatch.setattr(Pool, "_start_engine", held)
    pool = Pool(processes=1, start_method="spawn")
    body_ran = False

    async def enter() -> None:
        nonlocal body_ran
        async with pool:
            body_ran = True

    async def main() -> None:
        entering = asyncio.get_running_loop().create_task(enter())
        await asyncio.get_running_loop().run_in_executor(None, in_start.wait, 30)
        entering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await entering

    try:
        asyncio.run(main())
    finally:
        release.set()
    assert not body_ran
    assert "closed" in repr(pool)
    with pytest.raises(PoolClosedError):
        pool.submit(pow, 2, 3)
    assert wait_until(lambda: not pool.worker_pids())


# ------------------------------------------------------ as `with` in the rest


def test_entering_a_closed_or_entered_pool_is_as_with() -> None:
    async def main() -> None:
        pool = Pool(processes=1, start_method="fork")
        async with pool as outer:
            assert outer is pool
            async with pool as inner:  # as `with`: no error
                assert inner is pool
                assert await asyncio.wrap_future(pool.submit(pow, 2, 5)) == 32
            # The inner block shut the pool down, as nested `with` does.
            with pytest.raises(PoolClosedError):
                pool.submit(pow, 2, 3)
        async with pool:  # a closed pool: entering is no error either
            with pytest.raises(PoolClosedError):
                pool.submit(pow, 2, 3)

    asyncio.run(main())
    pool = Pool(processes=1)
    pool.shutdown()
    with pool, pytest.raises(PoolClosedError):
        pool.submit(pow, 2, 3)


def test_inline_pool() -> None:
    async def main() -> int:
        async with Pool(processes=0, threads=0):
            return await asyncio.wrap_future(cube(3))

    assert asyncio.run(main()) == 27


# --------------------------------------------------------- Ctrl-C, for real

_ASYNC_CTRL_C = """
import asyncio
method, mode, directory = sys.argv[1:4]
futures = []

async def main():
    async with Pool(processes=2, threads=2, start_method=method) as pool:
        futures.extend(ft.hold(directory, f"t{i}") for i in range(2))
        futures.append(ft.square(3))  # queued behind them: cancelled
        while not all((Path(directory) / n).exists() for n in ["t0", "t1"]):
            await asyncio.sleep(0.01)
        print(json.dumps({"workers": pool.worker_pids()}), flush=True)
        if mode == "await":
            await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        # mode "exit": leave the block at once; its end waits for the tasks
    print("left the block normally", flush=True)

if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic()!r}", flush=True)
        print(json.dumps([f.cancelled() or f.exception() is not None for f in futures]))
"""


@pytest.mark.parametrize("mode", ["await", "exit"])
def test_ctrl_c_under_asyncio_run_leaves_promptly_and_kills_the_workers(
    start_method: str, mode: str, tmp_path: Path
) -> None:
    script = Script(_ASYNC_CTRL_C, start_method, mode, str(tmp_path))
    workers: list[int] = []
    try:
        workers = json.loads(script.read_line())["workers"]
        assert len(workers) == 2
        sent = time.monotonic()
        script.process.send_signal(signal.SIGINT)
        line = script.read_line(timeout=30)
        assert line.startswith("interrupted "), line
        took = float(line.split()[1]) - sent
        # Every future ended (cancelled or failed): nothing hangs.
        assert json.loads(script.read_line()) == [True, True, True]
        assert script.process.wait(30) == 0
        print(f"\nCtrl-C under asyncio ({start_method}, {mode}): {took * 1000:.1f} ms")
        assert took < CTRL_C_BOUND
        # asyncio.run returned after the workers were stopped: none remains.
        assert _alive(workers) == []
        assert "Traceback" not in script.stderr()
    finally:
        for pid in _alive(workers):
            os.kill(pid, signal.SIGKILL)
        script.close()
