"""asyncio: nestpool futures under ``asyncio.wrap_future``, and ``amap``.

The "loop stays responsive" tests make the work itself depend on the loop: the
task waits for a gate that only a coroutine on the same loop opens. If waiting
for the value blocked the loop, the gate would never open (and the test would
time out) - no timing is measured.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nestpool import Pool

from . import ux_helpers
from .ux_helpers import cube, fail_on, triple, wait_for_file, wait_for_gate

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def fresh_gate() -> None:
    ux_helpers.GATE.clear()
    ux_helpers.STARTED.clear()


def test_wrap_future_awaits_process_subtask_and_inline_futures(start_method: str) -> None:
    async def main() -> tuple[int, int, int]:
        with Pool(processes=1, threads=2, start_method=start_method):
            in_worker = await asyncio.wrap_future(cube(3))
            on_threads = await asyncio.wrap_future(triple(3))
        inline = await asyncio.wrap_future(cube(2))
        return in_worker, on_threads, inline

    assert asyncio.run(main()) == (27, 9, 8)


def test_wrap_future_gathers_many(start_method: str) -> None:
    async def main() -> list[int]:
        with Pool(processes=2, start_method=start_method):
            return list(await asyncio.gather(*(asyncio.wrap_future(cube(i)) for i in range(8))))

    assert asyncio.run(main()) == [i**3 for i in range(8)]


def test_amap_on_process_tasks_keeps_the_loop_running(start_method: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def open_gate() -> None:
        await asyncio.sleep(0)
        gate.touch()

    async def main() -> list[int]:
        with Pool(processes=2, start_method=start_method):
            opener = asyncio.get_running_loop().create_task(open_gate())
            values = [v async for v in wait_for_file.amap([str(gate)] * 3, [1, 2, 3])]
            await opener
            return values

    assert asyncio.run(main()) == [1, 2, 3]


def test_amap_on_subtasks_keeps_the_loop_running() -> None:
    async def open_gate() -> None:
        # Only once a subtask waits on the gate: the loop ran meanwhile.
        while not ux_helpers.STARTED.is_set():
            await asyncio.sleep(0.005)
        ux_helpers.GATE.set()

    async def main() -> list[int]:
        with Pool(processes=1, threads=2):
            opener = asyncio.get_running_loop().create_task(open_gate())
            values = [v async for v in wait_for_gate.amap(range(4), ordered=False)]
            await opener
            return values

    assert sorted(asyncio.run(main())) == [0, 1, 2, 3]


def test_amap_without_a_pool_runs_off_the_loop_thread() -> None:
    # No pool: calls run inline, but in the executor thread, not the loop's.
    async def main() -> list[int]:
        async def open_gate() -> None:
            while not ux_helpers.STARTED.is_set():
                await asyncio.sleep(0.005)
            ux_helpers.GATE.set()

        opener = asyncio.get_running_loop().create_task(open_gate())
        values = [v async for v in wait_for_gate.amap([5, 6])]
        await opener
        return values

    assert asyncio.run(main()) == [5, 6]


def test_cancelling_the_consumer_loses_no_value() -> None:
    async def main() -> list[int]:
        with Pool(processes=1, threads=2):
            results = wait_for_gate.amap([10, 11])
            waiting = asyncio.get_running_loop().create_task(results.__anext__())
            while not ux_helpers.STARTED.is_set():
                await asyncio.sleep(0.005)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            ux_helpers.GATE.set()
            return [v async for v in results]

    assert asyncio.run(main()) == [10, 11]


def test_amap_raises_an_item_exception_at_its_place(start_method: str) -> None:
    got: list[int] = []

    async def consume() -> None:
        async for value in fail_on.amap(range(5), [2] * 5):
            got.append(value)  # noqa: PERF401 - keep what came before the error

    async def main() -> None:
        with Pool(processes=1, start_method=start_method):
            await consume()

    with pytest.raises(ValueError, match="bad item 2"):
        asyncio.run(main())
    assert got == [0, 1]


def test_amap_aclose_and_async_with_stop_the_map() -> None:
    async def main() -> tuple[int, int]:
        with Pool(processes=1):
            async with cube.amap(range(1000), buffersize=4) as values:  # type: ignore[attr-defined]
                first = await values.__anext__()
            with pytest.raises(StopAsyncIteration):
                await values.__anext__()
            again = cube.amap([3])
            second = await again.__anext__()
            await again.aclose()  # type: ignore[attr-defined]
            return first, second

    assert asyncio.run(main()) == (0, 27)


def test_amap_reports_progress_in_the_loop_thread() -> None:
    seen: list[int] = []

    async def main() -> list[int]:
        with Pool(processes=1):
            return [v async for v in cube.amap(range(3), progress=seen.append)]

    assert asyncio.run(main()) == [0, 1, 8]
    assert seen == [1, 2, 3]


def test_amap_inside_a_worker_over_subtasks(start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method):
        assert ux_helpers.async_sum_of_triples(4).result() == 3 * (0 + 1 + 2 + 3)


def test_amap_on_bound_methods() -> None:
    scaler = ux_helpers.Scaler(2)

    async def main() -> tuple[list[int], list[int]]:
        with Pool(processes=1, threads=2):
            scaled = [v async for v in scaler.scale.amap([1, 2, 3])]
            shifted = [v async for v in scaler.shift.amap([1, 2, 3])]
        return scaled, shifted

    assert asyncio.run(main()) == ([2, 4, 6], [3, 4, 5])


def test_aclose_while_a_value_is_awaited_in_the_executor() -> None:
    async def main() -> bool:
        with Pool(processes=1, threads=2):
            results = wait_for_gate.amap([1, 2, 3])
            waiting = asyncio.get_running_loop().create_task(results.__anext__())
            while not ux_helpers.STARTED.is_set():
                await asyncio.sleep(0.005)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await results.aclose()  # type: ignore[attr-defined]
            ux_helpers.GATE.set()  # the step in flight ends; then the map closes
            with pytest.raises(StopAsyncIteration):
                await results.__anext__()
        return True

    assert asyncio.run(main())
