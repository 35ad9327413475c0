"""A chunk's wire format (issue 6 made it lean) keeps every item's own outcome.

A chunk travels as positional-argument tuples and, when every item succeeded,
comes back as its bare values (``ChunkValues``); otherwise as one
``(ok, value_or_exception)`` per item. These tests send chunks straight to the
dispatcher and check each item's outcome: values, exceptions, unpicklable
results and arguments, and a worker killed in the middle of a chunk.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, TaskPicklingError, WorkerDiedError
from nestpool._dispatcher import Task, new_task_id
from nestpool._pool import _submit_picklable_items
from nestpool._serialize import ChunkValues, as_outcomes, dumps

from . import perf_tasks

pytestmark = pytest.mark.timeout(60)


def _send_chunk(pool: Pool, items: list[tuple[Any, ...]]) -> list[tuple[bool, Any]] | ChunkValues:
    options = perf_tasks.chunk_item._self_options
    future: Future[Any] = Future()
    task = Task(
        new_task_id(), options.name, options.get_payload(), dumps(items), future, None, items
    )
    pool._get_dispatcher().submit(task)
    result: list[tuple[bool, Any]] | ChunkValues = future.result(timeout=30)
    return result


def _expected(x: int, kill_at: int = -1) -> object:
    if x == kill_at:
        return WorkerDiedError
    if x % 7 == 3:
        return ValueError
    if x % 11 == 5:
        return TaskPicklingError
    return x * 2


def _kinds(outcomes: list[tuple[bool, Any]]) -> list[object]:
    return [value if ok else type(value) for ok, value in outcomes]


def test_a_chunk_of_successes_comes_back_as_its_values(start_method: str) -> None:
    items = [(x,) for x in (0, 1, 2, 4, 6, 8)]
    with Pool(1, start_method=start_method) as pool:
        result = _send_chunk(pool, items)
    assert type(result) is ChunkValues
    assert list(result) == [0, 2, 4, 8, 12, 16]
    assert as_outcomes(result) == [(True, v) for v in (0, 2, 4, 8, 12, 16)]


def test_each_item_of_a_chunk_keeps_its_own_outcome(start_method: str) -> None:
    items = [(x,) for x in range(30)]
    with Pool(1, start_method=start_method) as pool:
        result = _send_chunk(pool, items)
    assert type(result) is not ChunkValues
    assert _kinds(as_outcomes(result)) == [_expected(x) for x in range(30)]
    ok, error = as_outcomes(result)[3]
    assert not ok and str(error) == "bad 3"


def test_a_death_mid_chunk_fails_only_the_running_item(start_method: str, tmp_path: Path) -> None:
    marker = str(tmp_path / "killed")
    items = [(x, 12, marker) for x in range(30)]
    with Pool(2, start_method=start_method) as pool:
        result = _send_chunk(pool, items)
        # the pool goes on
        assert list(perf_tasks.chunk_item.map(range(3))) == [0, 2, 4]
    assert _kinds(as_outcomes(result)) == [_expected(x, 12) for x in range(30)]


def test_an_unpicklable_argument_fails_its_item_alone() -> None:
    import threading

    options = perf_tasks.chunk_item._self_options
    items: list[tuple[Any, ...]] = [(0,), (1,), (threading.Lock(),), (2,)]
    with Pool(1) as pool:
        future, is_chunk = _submit_picklable_items(
            pool._get_dispatcher(), options.name, options.get_payload(), items, None
        )
        outcomes = future.result(timeout=30)
    assert is_chunk
    assert _kinds(outcomes) == [0, 2, TaskPicklingError, 4]


def test_map_over_chunks_yields_the_values_in_order() -> None:
    with Pool(2):
        values = list(perf_tasks.chunk_item.map([x for x in range(2000) if _expected(x) == 2 * x]))
    assert values == [2 * x for x in range(2000) if _expected(x) == 2 * x]


def test_a_death_mid_unary_chunk_fails_only_the_running_item(
    start_method: str, tmp_path: Path
) -> None:
    marker = str(tmp_path / "killed")
    items: list[Any] = [*range(12), marker, *range(13, 30)]
    options = perf_tasks.unary_item._self_options
    future: Future[Any] = Future()
    with Pool(2, start_method=start_method) as pool:
        task = Task(
            new_task_id(),
            options.name,
            options.get_payload(),
            dumps(items),
            future,
            None,
            items,
            unary=True,
        )
        pool._get_dispatcher().submit(task)
        outcomes = as_outcomes(future.result(timeout=30))
    assert _kinds(outcomes) == [
        *(2 * x for x in range(12)),
        WorkerDiedError,
        *(2 * x for x in range(13, 30)),
    ]


def test_a_death_in_a_long_map_fails_its_item_and_loses_no_other(tmp_path: Path) -> None:
    marker = str(tmp_path / "killed")
    items: list[Any] = [*range(3000), marker, *range(3001, 6000)]
    with Pool(2):
        values = perf_tasks.unary_item.map(items)
        taken = [next(values) for _ in range(3000)]
        with pytest.raises(WorkerDiedError):
            next(values)
        # the pool goes on
        assert list(perf_tasks.unary_item.map(range(5))) == [0, 2, 4, 6, 8]
    assert taken == [2 * x for x in range(3000)]


def _send_unary(pool: Pool, task: Any, items: list[Any]) -> Any:
    options = task._self_options
    future: Future[Any] = Future()
    chunk = Task(
        new_task_id(),
        options.name,
        options.get_payload(),
        dumps(items),
        future,
        None,
        items,
        unary=True,
    )
    pool._get_dispatcher().submit(chunk)
    return future.result(timeout=30)


def test_a_chunk_flushed_in_parts_comes_back_whole() -> None:
    with Pool(1) as pool:
        result = _send_unary(pool, perf_tasks.slow_item, list(range(20)))
    assert type(result) is ChunkValues
    assert list(result) == [2 * x for x in range(20)]


def test_a_death_after_plain_flushes_keeps_the_flushed_values(tmp_path: Path) -> None:
    marker = str(tmp_path / "killed")
    items: list[Any] = [*range(15), marker, *range(16, 20)]
    with Pool(2) as pool:
        outcomes = as_outcomes(_send_unary(pool, perf_tasks.slow_item, items))
    assert _kinds(outcomes) == [
        *(2 * x for x in range(15)),
        WorkerDiedError,
        *(2 * x for x in range(16, 20)),
    ]
