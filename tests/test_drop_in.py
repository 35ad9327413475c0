"""``Pool`` as a drop-in for ``ProcessPoolExecutor``: its constructor's
``max_workers`` and ``mp_context``, ``_max_workers`` for Dask's local
scheduler, partials of decorated tasks, a Future returned by a task, and the
standard library's words for work given after the interpreter began to exit."""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, TaskPicklingError
from tests import drop_in_tasks as tasks

pytestmark = pytest.mark.timeout(60)

FUTURE_MESSAGE = "a Future cannot be sent back to the caller"
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ the constructor


def test_max_workers_is_the_number_of_worker_processes() -> None:
    with Pool(max_workers=2) as pool:
        assert pool.processes == 2
        assert pool._max_workers == 2
        barrier = multiprocessing.Manager()
        try:
            meet = barrier.Barrier(2)
            pids = {f.result(timeout=30) for f in [pool.submit(_meet, meet) for _ in range(2)]}
        finally:
            barrier.shutdown()
        assert len(pids) == 2
        assert set(pool.worker_pids()) == pids


def _meet(barrier: Any) -> int:
    barrier.wait(timeout=20)
    return os.getpid()


@pytest.mark.parametrize("max_workers", [0, -1])
def test_max_workers_below_one_is_refused_as_process_pool_executor_does(
    max_workers: int,
) -> None:
    with pytest.raises(ValueError) as standard:
        ProcessPoolExecutor(max_workers=max_workers)
    with pytest.raises(ValueError) as ours:
        Pool(max_workers=max_workers)
    assert str(ours.value) == str(standard.value) == "max_workers must be greater than 0"


def test_max_workers_none_is_the_usable_cpu_count() -> None:
    with Pool(max_workers=None, threads=1) as pool, Pool(threads=1) as default:
        assert pool.processes == default.processes >= 1


def test_mp_context_starts_the_workers(start_method: str) -> None:
    context = tasks.COUNTING_CONTEXTS[start_method]()
    tasks._Counted.started.clear()
    with Pool(max_workers=1, mp_context=context) as pool:
        assert pool.start_method == start_method
        _args, _kwargs, pid, in_worker = tasks.describe().result(timeout=30)
        assert in_worker
        # The worker is a process of the given context's own Process class.
        assert pid in tasks._Counted.started
        assert pool.worker_pids() == [pid]


def test_a_standard_context_works_too() -> None:
    with Pool(mp_context=multiprocessing.get_context("spawn"), max_workers=1) as pool:
        assert pool.start_method == "spawn"
        assert pool.submit(pow, 2, 5).result(timeout=30) == 32


def test_both_names_of_one_option_are_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"processes.*max_workers"):
        Pool(processes=2, max_workers=2)
    with pytest.raises(TypeError, match=r"processes.*max_workers"):
        Pool(2, max_workers=2)
    with pytest.raises(TypeError, match=r"start_method.*mp_context"):
        Pool(start_method="spawn", mp_context=multiprocessing.get_context("spawn"))


def test_mp_context_must_be_a_context_with_a_start_method_nestpool_knows() -> None:
    with pytest.raises(TypeError, match="mp_context must be a multiprocessing context"):
        Pool(mp_context="spawn")  # type: ignore[arg-type]

    class Elsewhere(multiprocessing.context.SpawnContext):
        _name = "elsewhere"

    with pytest.raises(ValueError, match="'elsewhere'"):
        Pool(mp_context=Elsewhere())


def test_process_pool_executors_positional_mp_context_gets_a_hint() -> None:
    # ProcessPoolExecutor(2, ctx): Pool's second argument is threads.
    with pytest.raises(TypeError, match="pass it as mp_context="):
        Pool(2, multiprocessing.get_context("spawn"))  # type: ignore[arg-type]


def test_with_a_client_the_local_options_are_refused() -> None:
    for option in ({"max_workers": 2}, {"mp_context": multiprocessing.get_context("spawn")}):
        with pytest.raises(ValueError, match=next(iter(option))):
            Pool(client=object(), **option)  # type: ignore[arg-type]


def test_max_workers_property_counts_the_tasks_that_run_at_once() -> None:
    with Pool(processes=3, tasks_per_process=2) as pool:
        assert pool._max_workers == 6
    with Pool(processes=0) as inline:
        assert inline._max_workers == 1  # one at a time, in the caller
    with pytest.raises(AttributeError):
        pool._max_workers = 1  # type: ignore[misc]


# ------------------------------------------------------------------ Dask's local scheduler


def _graph() -> Any:
    dask = pytest.importorskip("dask")
    return dask.delayed(tasks.collect)([dask.delayed(tasks.where)(i) for i in range(6)])


def _check_ran_in_workers(parts: list[tuple[int, int, bool]], pool: Pool) -> None:
    assert [i for i, _pid, _in_worker in parts] == list(range(6))
    assert all(in_worker for _i, _pid, in_worker in parts)
    assert {pid for _i, pid, _in_worker in parts} <= set(pool.worker_pids())
    assert os.getpid() not in {pid for _i, pid, _in_worker in parts}


def test_dask_compute_with_the_pool_as_its_scheduler(start_method: str) -> None:
    dask = pytest.importorskip("dask")
    with Pool(processes=2, start_method=start_method) as pool:
        (parts,) = dask.compute(_graph(), scheduler=pool)
        _check_ran_in_workers(parts, pool)


def test_dask_compute_with_the_pool_in_dask_config() -> None:
    dask = pytest.importorskip("dask")
    with Pool(processes=2) as pool, dask.config.set(pool=pool):
        (parts,) = dask.compute(_graph())
        _check_ran_in_workers(parts, pool)


# ------------------------------------------------------------------ partials


def test_submit_runs_a_partial_of_a_task_in_a_worker(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method) as pool:
        future = pool.submit(functools.partial(tasks.describe, 1, k=2), 3, j=4)
        args, kwargs, pid, in_worker = future.result(timeout=30)
    assert (args, kwargs) == ((1, 3), {"k": 2, "j": 4})
    assert in_worker and pid != os.getpid()


def test_run_in_executor_with_a_partial_of_a_task() -> None:
    async def main(pool: Pool) -> object:
        loop = asyncio.get_running_loop()
        # (asyncio's own signature types this as the partial's Future)
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


# ------------------------------------------------------------------ interpreter shutdown

_EXIT_SCRIPT = """
import json
import sys
import threading

results = {}


def attempt(name, call):
    try:
        value = call()
        if hasattr(value, "__next__"):
            value = list(value)
        if hasattr(value, "result"):
            value = value.result(timeout=30)
        results[name] = ["ok", repr(value)]
    except BaseException as exc:
        results[name] = [type(exc).__name__, str(exc), isinstance(exc, RuntimeError)]


def late():
    from tests import drop_in_tasks as tasks

    attempt("left open: submit", lambda: left_open.submit(pow, 2, 3))
    attempt("left open: map", lambda: left_open.map(pow, [2], [3]))
    attempt("shut down: submit", lambda: shut_down.submit(pow, 2, 3))
    attempt("standard shut down: submit", lambda: standard_shut_down.submit(pow, 2, 3))
    standard = ProcessPoolExecutor(1)
    attempt("standard: submit", lambda: standard.submit(pow, 2, 3))
    fresh = Pool(processes=1)
    attempt("fresh: submit", lambda: fresh.submit(pow, 2, 3))
    attempt("fresh: map", lambda: fresh.map(pow, [2], [3]))
    attempt("fresh: task", lambda: tasks.scaled(2))
    attempt("fresh: task map", lambda: tasks.scaled.map([2]))
    fresh.shutdown()
    inline = Pool(processes=0)
    attempt("inline: task", lambda: tasks.scaled(2))
    inline.shutdown()
    attempt("no pool: task", lambda: tasks.scaled(2))
    print(json.dumps(results), flush=True)


if sys.argv[1] == "threading":
    # Registered before nestpool and concurrent.futures.process register
    # theirs: threading's exit hooks run last-registered first, so this one
    # runs after both.
    threading._register_atexit(late)
else:
    import atexit

    atexit.register(late)  # after every threading hook

from concurrent.futures import ProcessPoolExecutor

from nestpool import Pool

left_open = Pool(processes=1)
assert left_open.submit(pow, 2, 3).result(timeout=30) == 8
shut_down = Pool(processes=1)
shut_down.shutdown()
standard_shut_down = ProcessPoolExecutor(1)
standard_shut_down.shutdown()
"""

EXIT_MESSAGE = "cannot schedule new futures after interpreter shutdown"
SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"


@pytest.mark.parametrize("hook", ["atexit", "threading"])
def test_work_given_after_interpreter_shutdown_is_refused_in_the_standard_words(
    hook: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, hook],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    # What ProcessPoolExecutor says, measured in the same exit.
    assert results["standard: submit"] == ["RuntimeError", EXIT_MESSAGE, True]
    assert results["standard shut down: submit"] == ["RuntimeError", SHUTDOWN_MESSAGE, True]
    refused = ["RuntimeError", EXIT_MESSAGE, True]  # exactly the standard library's
    for name in (
        "left open: submit",  # the pool the program left open, shut at exit
        "left open: map",
        "fresh: submit",  # a pool made after the exit began
        "fresh: map",
        "fresh: task",  # decorated calls routed to it
        "fresh: task map",
        "inline: task",
    ):
        assert results[name] == refused, name
    # A pool its user shut down says so, as ProcessPoolExecutor does.
    assert results["shut down: submit"] == ["PoolClosedError", SHUTDOWN_MESSAGE, True]
    # With no pool open a decorated call runs inline, as always.
    assert results["no pool: task"] == ["ok", "2"]
