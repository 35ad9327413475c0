"""``Pool`` as a drop-in for ``ProcessPoolExecutor``: partials of decorated
tasks, and a Future returned by a task."""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import Future
from typing import Any

import pytest

from nestpool import Pool, TaskPicklingError
from tests import drop_in_tasks as tasks

pytestmark = pytest.mark.timeout(60)

FUTURE_MESSAGE = "a Future cannot be sent back to the caller"


# ------------------------------------------------------------------ partials


def test_submit_runs_a_partial_of_a_task_in_a_worker(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method) as pool:
        future = pool.submit(functools.partial(tasks.describe, 1, k=2), 3, j=4)
        args, kwargs, pid, in_worker = future.result(timeout=30)
    assert (args, kwargs) == ((1, 3), {"k": 2, "j": 4})
    assert in_worker and pid != os.getpid()


def test_run_in_executor_with_a_partial_of_a_task() -> None:
    async def main(pool: Pool) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(tasks.scaled, k=10), 4)

    with Pool(processes=1) as pool:
        assert asyncio.run(main(pool)) == 40


def test_nested_partials_keep_the_order_of_arguments_and_keywords() -> None:
    inner = functools.partial(tasks.describe, "a", k=1, keep="inner")
    inner.note = "a __dict__ keeps partial() from flattening it"  # type: ignore[attr-defined]
    outer = functools.partial(inner, "b", k=2)
    assert outer.func is inner  # really nested
    labelled = tasks.Labelled(outer, "c")
    with Pool(processes=1) as pool:
        args, kwargs, _pid, in_worker = pool.submit(labelled, "d", k=3).result(timeout=30)
        expected = labelled("d", k=3).result(timeout=30)  # what calling it gives
    assert in_worker
    assert args == ("a", "b", "c", "d") == expected[0]
    assert kwargs == {"k": 3, "keep": "inner"} == expected[1]


def test_partials_of_a_bound_method_and_a_subtask() -> None:
    with Pool(processes=1) as pool:
        bound = functools.partial(tasks.Scaler(3).scale, offset=1)
        assert pool.submit(bound, 2).result(timeout=30) == 7
        subtask = functools.partial(tasks.subtask_scaled, k=5)
        assert pool.submit(subtask, 2).result(timeout=30) == 10


def test_map_runs_a_partial_of_a_task() -> None:
    with Pool(processes=2) as pool:
        assert list(pool.map(functools.partial(tasks.scaled, k=3), range(5))) == [
            0,
            3,
            6,
            9,
            12,
        ]
        bound = functools.partial(tasks.Scaler(2).scale, offset=1)
        assert list(pool.map(bound, [1, 2], chunksize=2)) == [3, 5]
        positional = functools.partial(tasks.describe, "first")
        assert [r[0] for r in pool.map(positional, ["x", "y"])] == [
            ("first", "x"),
            ("first", "y"),
        ]


def test_a_partial_of_sync_runs_in_a_worker_too() -> None:
    # The typed spelling for run_in_executor: partial(task.sync, ...) is a
    # partial[R], where partial(task, ...) is a partial[Future[R]] to asyncio.
    async def main(pool: Pool) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(tasks.scaled.sync, k=10), 4)

    with Pool(processes=1) as pool:
        assert asyncio.run(main(pool)) == 40
        _args, _kwargs, pid, in_worker = pool.submit(tasks.describe.sync).result(timeout=30)
        assert in_worker and pid != os.getpid()


def test_partials_inline_with_no_processes() -> None:
    with Pool(processes=0) as pool:
        assert pool.submit(functools.partial(tasks.scaled, k=2), 3).result() == 6
        assert list(pool.map(functools.partial(tasks.scaled, k=2), [1, 2])) == [2, 4]


def test_a_partial_of_a_plain_function_is_unchanged() -> None:
    with Pool(processes=1) as pool:
        assert pool.submit(functools.partial(pow, 2), 10).result(timeout=30) == 1024


# ------------------------------------------------------------------ a Future returned


def _check_future_error(error: BaseException | None, name: str) -> None:
    assert isinstance(error, TaskPicklingError)
    message = str(error)
    assert FUTURE_MESSAGE in message
    assert ".sync(" in message
    assert error.task_name == name
    assert error.direction == "result"


def test_a_task_that_returns_a_future_fails_with_a_clear_error(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method):
        _check_future_error(tasks.returns_future(2).exception(timeout=30), "returns_future")
        _check_future_error(tasks.returns_futures([1, 2]).exception(timeout=30), "returns_futures")
        # The pool goes on.
        assert tasks.scaled(2, k=2).result(timeout=30) == 4


def test_a_map_item_that_returns_a_future_fails_alone() -> None:
    with Pool(processes=1) as pool:
        items = pool.map(tasks.returns_future, [1, 2], chunksize=2)
        with pytest.raises(TaskPicklingError, match=FUTURE_MESSAGE):
            next(items)


def test_a_partial_with_its_own_call_gets_the_future_error() -> None:
    # The pool cannot know what such a partial calls: it runs as given, calls
    # the decorated task in the worker, and the Future it gets cannot return.
    with Pool(processes=1) as pool:
        future: Future[Any] = pool.submit(tasks.CustomCall(tasks.scaled, k=2), 3)
        _check_future_error(future.exception(timeout=30), "partial(scaled)")
