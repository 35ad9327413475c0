"""``retries=`` and ``task.options()``: a call whose worker died or that ran
past its timeout runs again on another worker, up to ``retries`` more times;
one that raised never does. A map retries per item. A variant made by
``options()`` is typed, named and pickled like its original.
"""

from __future__ import annotations

import pickle
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, ProcessTask, TaskTimeoutError, WorkerDiedError, process_task
from nestpool._protocol import Result
from nestpool._records import Task, TaskState, new_task_id
from nestpool._serialize import FunctionPayload, dumps
from nestpool._tasks import TaskTable
from tests import fault_tasks as ft

pytestmark = pytest.mark.timeout(90)


def test_a_killed_call_runs_again_on_a_fresh_worker(start_method: str, tmp_path: Path) -> None:
    with Pool(processes=2, start_method=start_method):
        pid = ft.die_first(str(tmp_path), 2).result(timeout=60)
    tries = ft.read_tries(str(tmp_path))
    assert len(tries) == 3  # two deaths, then the value
    pids = [p for _, p in tries]
    assert pids[-1] == pid
    # Each try ran in a worker no earlier try ran in (those died).
    assert len(set(pids)) == 3


def test_every_try_failing_fails_with_the_last_error_and_the_count(
    start_method: str, tmp_path: Path
) -> None:
    with Pool(processes=2, start_method=start_method):
        error = ft.die_first(str(tmp_path), 99).exception(timeout=60)
    assert isinstance(error, WorkerDiedError)
    assert error.signal == "SIGKILL"
    assert "after 4 tries (3 retries)" in str(error)
    tries = ft.read_tries(str(tmp_path))
    assert len(tries) == 4
    assert error.pid == tries[-1][1]  # the last try's worker


def test_a_task_that_raised_is_not_retried(tmp_path: Path) -> None:
    with Pool(processes=1):
        error = ft.raise_counted(str(tmp_path)).exception(timeout=60)
    assert isinstance(error, ValueError)
    assert len(ft.read_tries(str(tmp_path))) == 1


def test_a_timed_out_call_runs_again_elsewhere(start_method: str, tmp_path: Path) -> None:
    with Pool(processes=1, start_method=start_method):
        pid = ft.stuck_first(str(tmp_path), 1).result(timeout=60)
        stuck_pid = ft.read_tries(str(tmp_path))[0][1]
        assert pid != stuck_pid  # the stuck worker was stopped and replaced
        (tmp_path / "x").mkdir()
        future = ft.stuck_first.options(retries=1)(str(tmp_path / "x"), 99)
        caught = future.exception(timeout=60)
    assert isinstance(caught, TaskTimeoutError)
    assert "after 2 tries (1 retry)" in str(caught)


def test_without_retries_nothing_changes(tmp_path: Path) -> None:
    with Pool(processes=1):
        error = ft.die_first.options(retries=0)(str(tmp_path), 99).exception(timeout=60)
    assert isinstance(error, WorkerDiedError)
    assert "tries" not in str(error)
    assert len(ft.read_tries(str(tmp_path))) == 1


@pytest.mark.parametrize("deaths", [1, 3])
def test_a_map_retries_the_item_whose_worker_died_alone(
    start_method: str, tmp_path: Path, deaths: int
) -> None:
    items = range(40)
    task = ft.die_on_item.options(retries=2)
    with Pool(processes=2, start_method=start_method):
        outcomes = []
        iterator = task.map(items, [str(tmp_path)] * 40, [17] * 40, [deaths] * 40, chunksize=8)
        for _ in items:
            try:
                outcomes.append(next(iterator))
            except WorkerDiedError as exc:
                outcomes.append(exc)
                break
    runs = [key for key, _ in ft.read_tries(str(tmp_path))]
    if deaths == 1:
        assert outcomes == [x * 10 for x in items]
        assert runs.count("17") == 2
    else:  # three tries (two retries), each lost: the item fails, the map ends there
        assert outcomes[:17] == [x * 10 for x in range(17)]
        assert isinstance(outcomes[17], WorkerDiedError)
        assert "after 3 tries (2 retries)" in str(outcomes[17])
        assert runs.count("17") == 3
    # Its siblings ran and kept their values; none of them counted a try.
    for x in range(16):
        assert 1 <= runs.count(str(x)) <= 2


def test_retries_are_checked_at_decoration() -> None:
    with pytest.raises(ValueError, match="retries must be >= 0"):
        process_task(retries=-1)
    with pytest.raises(TypeError, match="retries must be an int"):
        process_task(retries=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retries must be an int"):
        process_task(retries=True)
    assert process_task(retries=2)(ft.soak_task.__wrapped__).retries == 2


# ------------------------------------------------------------------ options()


def test_options_gives_a_variant_with_the_same_identity() -> None:
    variant = ft.soak_task.options(timeout=2, retries=1)
    assert isinstance(variant, ProcessTask)
    assert (variant.timeout, variant.retries) == (2.0, 1)
    assert (ft.soak_task.timeout, ft.soak_task.retries) == (None, 0)
    assert variant.__name__ == ft.soak_task.__name__
    assert variant.__wrapped__ is ft.soak_task.__wrapped__
    assert variant.task_name == ft.soak_task.task_name
    # Options not given are kept; a variant of a variant keeps the rest.
    assert variant.options(retries=3).timeout == 2.0
    assert ft.stuck_first.options(retries=0).timeout == 0.5
    assert ft.stuck_first.options(timeout=None).timeout is None
    assert variant.sync(3, 0.0) == 6


def test_options_refuses_unknown_and_bad_options() -> None:
    with pytest.raises(TypeError, match="timeot"):
        ft.soak_task.options(timeot=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="timeout"):
        ft.soak_task.options(timeout=0)
    with pytest.raises(ValueError, match="retries"):
        ft.soak_task.options(retries=-2)


def test_a_variant_pickles_by_reference_with_its_options() -> None:
    variant = ft.stuck_first.options(retries=0, timeout=3)
    blob = pickle.dumps(variant)
    assert b"stuck_first" in blob and len(blob) < 400  # by name, not by value
    copy = pickle.loads(blob)
    assert (copy.timeout, copy.retries) == (3.0, 0)
    assert copy.__wrapped__ is ft.stuck_first.__wrapped__


def test_a_variant_runs_in_workers_and_inside_them(start_method: str) -> None:
    variant = ft.soak_task.options(timeout=30, retries=1)
    with Pool(processes=2, start_method=start_method) as pool:
        assert variant(4, 0.0).result(timeout=60) == 10
        assert list(variant.map(range(5), [0.0] * 5)) == [0, 1, 3, 6, 10]
        # Sent to a worker as an argument, and called there: inline in it.
        assert pool.submit(ft.call_variant, variant, 4).result(timeout=60) == 10
        assert pool.submit(variant, 4, 0.0).result(timeout=60) == 10


def test_options_on_methods(start_method: str) -> None:
    """A bound decorated method's variant stays bound (the instance first);
    class and static methods likewise."""
    counter = ft.Counter(3)
    assert counter.times.options(timeout=5).sync(2) == 6
    with Pool(processes=1, start_method=start_method):
        assert counter.times.options(timeout=5, retries=1)(2).result(timeout=60) == 6
        assert list(counter.times.options(retries=1).map([1, 2])) == [3, 6]
        assert ft.Counter.times.options(retries=1)(counter, 4).result(timeout=60) == 12
        if sys.version_info >= (3, 13):
            # classmethod no longer binds through the task (gh-89519): the
            # attribute is a bound method over the task, whose options() is
            # the task's own, unbound: the class goes first.
            variant = ft.Counter.plus_one.options(retries=1)
            assert variant(ft.Counter, 1).result(timeout=60) == 2
        else:
            assert ft.Counter.plus_one.options(retries=1)(1).result(timeout=60) == 2
        assert ft.Counter.plus_two.options(retries=1)(1).result(timeout=60) == 3


# ------------------------------------------------------------ the task table


def _running_chunk(tasks: TaskTable, size: int, retries: int) -> Task:
    pairs: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((x,), {}) for x in range(size)]
    task = Task(new_task_id(), "t", FunctionPayload(b""), dumps(pairs), Future(), None, pairs)
    task.retries = retries
    tasks.add(task)
    assert tasks.next_to_send() is task
    task.move(TaskState.SENT)
    task.move(TaskState.RUNNING)
    return task


def _result(task: Task, first: int, values: list[Any]) -> Result:
    return Result(task.id, first, len(values), True, 0.0, dumps(values), True)


@pytest.mark.parametrize("item_last", [True, False])
def test_a_chunk_resolves_once_with_its_retried_item_whichever_ends_last(
    item_last: bool,
) -> None:
    tasks = TaskTable()
    chunk_task = _running_chunk(tasks, 4, retries=1)
    assert chunk_task.chunk is not None
    chunk_task.chunk.outcomes[0] = (True, "zero")
    tasks.lose(chunk_task, WorkerDiedError("died"), 1, rerun=True)
    # Item 1 runs on its own (a try counted), items 2 and 3 as the chunk.
    rest, item = list(tasks.pending)
    assert rest is chunk_task and item.item_of == (chunk_task, 1)
    assert (item.tries, item.retries) == (1, 1)
    assert chunk_task.chunk.indices == [2, 3]
    for task in (rest, item):
        assert tasks.next_to_send() is task
        task.move(TaskState.SENT)
        task.move(TaskState.RUNNING)
    order = [(rest, _result(rest, 0, ["two", "three"])), (item, _result(item, 0, ["one"]))]
    if not item_last:
        order.reverse()
    tasks.take_result(*order[0])
    assert not chunk_task.future.done()
    tasks.take_result(*order[1])
    outcomes = chunk_task.future.result(timeout=0)
    assert outcomes == [(True, "zero"), (True, "one"), (True, "two"), (True, "three")]
    assert not tasks


def test_an_item_out_of_tries_fails_alone_with_the_count() -> None:
    tasks = TaskTable()
    chunk_task = _running_chunk(tasks, 2, retries=1)
    tasks.lose(chunk_task, WorkerDiedError("died."), 0, rerun=True)
    rest, item = list(tasks.pending)
    for task in (rest, item):
        assert tasks.next_to_send() is task
        task.move(TaskState.SENT)
        task.move(TaskState.RUNNING)
    tasks.take_result(rest, _result(rest, 0, ["one"]))
    assert not chunk_task.future.done()
    tasks.lose(item, WorkerDiedError("died again."), 0, rerun=True)
    (ok0, error), second = chunk_task.future.result(timeout=0)
    assert not ok0 and isinstance(error, WorkerDiedError)
    assert str(error) == (
        "died again. Failed after 2 tries (1 retry): every try lost its worker or ran out of time."
    )
    assert second == (True, "one")


def test_terminating_never_retries() -> None:
    tasks = TaskTable()
    task = _running_chunk(tasks, 1, retries=3)
    tasks.lose(task, WorkerDiedError("terminated"), 0, rerun=False)
    ((ok, error),) = task.future.result(timeout=0)
    assert not ok and str(error) == "terminated"
    assert not tasks.pending
