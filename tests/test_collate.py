"""``task.map``: lazy and bounded, ordered or not, auto-batched; each item's own
outcome; early exit cancels what has not started.

On process tasks and subtasks, in the parent and inside a worker. Gates are
files the test creates (process tasks) or events (threads of one process);
nothing sleeps to let something start.
"""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, PoolClosedError, TaskPicklingError
from nestpool._collate import CHUNKS_PER_SLOT, CONFIRMED_GROWTH, MAX_AUTO_CHUNK
from nestpool._serialize import RemoteTraceback
from tests.helpers import local_engine

from . import collate_tasks as ct
from .collate_tasks import Control, Counting, drain, failing_input
from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


def _touch(directory: Path, name: str) -> None:
    (directory / name).touch()


def _started(directory: Path, n: int) -> bool:
    return all((directory / f"started-{i}").exists() for i in range(n))


def _record_process_chunks(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of items of every unit the pool's dispatcher is sent."""
    dispatcher = local_engine(pool).get_dispatcher()
    sizes: list[int] = []
    submit = dispatcher.submit

    def recording(task: Any) -> None:
        sizes.append(1 if task.chunk is None else len(task.chunk.items))
        submit(task)

    monkeypatch.setattr(dispatcher, "submit", recording)
    return sizes


def _record_subtask_chunks(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of items of every unit a subtask map submits."""
    subtasks = pool.subtask_pool()
    assert subtasks is not None
    sizes: list[int] = []
    submit = subtasks.submit

    def recording(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        sizes.append(len(args[1]) if getattr(fn, "__name__", "") == "run_chunk" else 1)
        return submit(fn, args, kwargs)

    monkeypatch.setattr(subtasks, "submit", recording)
    return sizes


# ---------------------------------------------------------------- bounds


def test_an_endless_input_works_on_process_tasks(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method):
        values = ct.twice.map(itertools.count())
        assert [next(values) for _ in range(10)] == [2 * i for i in range(10)]
        values.close()  # type: ignore[attr-defined]
        assert list(values) == []
        assert ct.twice(21).result() == 42  # the pool goes on


@pytest.mark.parametrize("kind", ["process", "pool.map", "subtask"])
def test_a_map_taken_after_its_pool_shut_down_hands_out_what_was_in_flight(kind: str) -> None:
    # Leaving the with block waits for submitted work; a lazy map submits only
    # as values are taken. Afterwards: the values that were in flight, then
    # the standard library's RuntimeError in turn (as Executor.map with a
    # buffersize does on Python 3.14), then the end.
    with Pool(processes=1, threads=2) as pool:
        counter = Counting(iter(range(1000)))
        values: Iterator[int]
        if kind == "process":
            values = ct.twice.map(counter, chunksize=1, buffersize=3)
        elif kind == "pool.map":
            values = pool.map(ct.twice.sync, counter, buffersize=3)
        else:
            values = ct.sub_twice.map(counter, buffersize=3)
        assert next(values) == 0
    # buffersize=3: items 1, 2 and 3 were in flight, and ran before the block ended.
    assert [next(values) for _ in range(3)] == [2, 4, 6]
    with pytest.raises(PoolClosedError, match=r"^cannot schedule new futures after shutdown$"):
        next(values)
    with pytest.raises(StopIteration):
        next(values)
    # Still the bound: taken = values handed out (4) + buffersize (3); items
    # 4-6 were taken and failed to be submitted.
    assert counter.taken == 4 + 3


def test_buffersize_bounds_the_items_taken_exactly() -> None:
    # buffersize counts items: taken from the input and not yet handed out.
    with Pool(processes=1):
        counter = Counting(itertools.count())
        values = ct.twice.map(counter, chunksize=1, buffersize=5)
        assert counter.taken == 5  # work starts at the call, bounded
        assert [next(values) for _ in range(10)] == [2 * i for i in range(10)]
        assert counter.taken == 10 + 5
        values.close()  # type: ignore[attr-defined]
        assert counter.taken == 15


def test_buffersize_with_chunks_keeps_chunks_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # In flight stays <= buffersize, and the map does not degrade into
    # one-item chunks once the first values have been handed out.
    with Pool(processes=1) as pool:
        sizes = _record_process_chunks(pool, monkeypatch)
        counter = Counting(itertools.count())
        values = ct.twice.map(counter, chunksize=3, buffersize=7)
        for taken in range(1, 31):
            assert next(values) == 2 * (taken - 1)
            assert counter.taken <= taken + 7
        values.close()  # type: ignore[attr-defined]
        assert sizes and set(sizes) == {3}


def test_the_default_bound_is_finite() -> None:
    with Pool(processes=1) as pool:
        counter = Counting(itertools.count())
        values = ct.twice.map(counter, chunksize=1)
        assert [next(values) for _ in range(10)] == [2 * i for i in range(10)]
        # A few chunks per worker slot (processes x tasks_per_process).
        slots = pool.processes * pool.tasks_per_process
        assert counter.taken == 10 + CHUNKS_PER_SLOT * slots
        values.close()  # type: ignore[attr-defined]

        counter = Counting(itertools.count())
        values = ct.twice.map(counter)  # automatic chunk size
        assert [next(values) for _ in range(10)] == [2 * i for i in range(10)]
        assert counter.taken <= 10 + CHUNKS_PER_SLOT * slots * MAX_AUTO_CHUNK
        values.close()  # type: ignore[attr-defined]


def test_subtask_map_bounds_in_the_parent() -> None:
    with Pool(processes=1, threads=2):
        for buffersize, bound in ((5, 5), (None, 4 * 2)):
            counter = Counting(itertools.count())
            values = ct.sub_twice.map(counter, buffersize=buffersize)
            assert [next(values) for _ in range(10)] == [2 * i for i in range(10)]
            assert counter.taken == 10 + bound
            values.close()  # type: ignore[attr-defined]
            assert list(values) == []


def test_subtask_map_bounds_inside_a_worker(start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method):
        taken, consumed, threads = ct.bounds_in_worker(5).result()
        assert taken == [2 * i for i in range(10)]
        assert consumed == 10 + 5
        taken, consumed, threads = ct.bounds_in_worker(None).result()
        assert taken == [2 * i for i in range(10)]
        assert threads == 2
        assert consumed == 10 + 4 * threads


def test_a_process_task_map_inside_a_worker_runs_inline_and_lazily(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method):
        got = ct.process_map_in_worker().result()
    assert got["taken"] == [2 * i for i in range(10)]
    assert got["consumed"] == 10  # inline: one item per value
    assert got["after_close"] == []
    assert got["unordered"] == [0, 2, 4, 6, 8]
    assert got["pids"] == {got["pid"]}


def test_without_a_pool_map_is_lazy_too() -> None:
    counter = Counting(itertools.count())
    values = ct.twice.map(counter)
    assert [next(values) for _ in range(3)] == [0, 2, 4]
    assert counter.taken == 3
    values.close()  # type: ignore[attr-defined]


def _with_and_close(task: Any) -> list[Any]:
    """Leave a map by ``with``, by ``close()`` and by an exception (item 2 of
    ``raise_for`` fails); what did each give?"""
    with task.map(range(5)) as values:
        first = [next(values), next(values)]
    after_with = list(values)
    values = task.map(range(5))
    next(values)
    values.close()
    after_close = list(values)
    got, error = drain(task.map([1, 2, 3]))
    return [first, after_with, after_close, got, type(error).__name__]


def test_every_route_has_close_and_with(start_method: str) -> None:
    # The same code works whatever the route: the map of inline calls (no
    # pool, processes=0, threads=0, inside a worker) has close() and with,
    # and ends at an exception, as the pool's map does.
    ok = [[0, 2], [], [], [2, 4, 6], "NoneType"]
    failing = [[0, 1], [], [], [1], "KeyError"]
    routes = [(ct.twice, ok), (ct.sub_twice, ok), (ct.raise_for, failing)]
    routes.append((ct.sub_raise_for, failing))
    for task, expected in routes:
        assert _with_and_close(task) == expected  # no pool
    with Pool(processes=0, threads=0):
        for task, expected in routes:
            assert _with_and_close(task) == expected
    with Pool(processes=1, threads=2, start_method=start_method):
        for task, expected in routes:
            assert _with_and_close(task) == expected
        assert ct.with_blocks_in_worker().result() == [[0, 2], [], [0, 2, 4]]


# ---------------------------------------------------------------- unordered


def test_unordered_process_map_yields_in_completion_order(
    start_method: str, tmp_path: Path
) -> None:
    order = [2, 0, 3, 1]
    with Pool(processes=1, tasks_per_process=4, start_method=start_method):
        values = ct.gated.map([str(tmp_path)] * 4, range(4), ordered=False, chunksize=1)
        try:
            assert wait_until(lambda: _started(tmp_path, 4))
            for i in order:
                _touch(tmp_path, f"gate-{i}")
                assert next(values) == i
            with pytest.raises(StopIteration):
                next(values)
        finally:
            for i in range(4):
                _touch(tmp_path, f"gate-{i}")


def test_ordered_process_map_keeps_input_order(tmp_path: Path) -> None:
    with Pool(processes=1, tasks_per_process=4):
        values = ct.gated.map([str(tmp_path)] * 4, range(4), chunksize=1)
        assert wait_until(lambda: _started(tmp_path, 4))
        for i in [3, 1, 2, 0]:
            _touch(tmp_path, f"gate-{i}")
        assert list(values) == [0, 1, 2, 3]


def test_unordered_subtask_map_yields_in_completion_order() -> None:
    order = [2, 0, 3, 1]
    control = Control(4)
    with Pool(processes=1, threads=4):
        values = ct.sub_gated.map([control] * 4, range(4), ordered=False)
        try:
            assert control.all_started()
            for i in order:
                control.gates[i].set()
                assert next(values) == i
            assert list(values) == []
        finally:
            for gate in control.gates:
                gate.set()


def test_unordered_subtask_map_raises_an_item_error_when_it_completes() -> None:
    control = Control(4)
    fails = [i == 3 for i in range(4)]
    with Pool(processes=1, threads=4):
        values = ct.sub_gated.map([control] * 4, range(4), fails, ordered=False)
        try:
            assert control.all_started()
            control.gates[1].set()
            assert next(values) == 1
            control.gates[3].set()  # fails while 0 and 2 still wait
            with pytest.raises(ValueError, match=r"^item 3 failed$"):
                next(values)
            assert list(values) == []
        finally:
            for gate in control.gates:
                gate.set()


def test_unordered_subtask_map_inside_a_worker(start_method: str) -> None:
    with Pool(processes=1, threads=4, start_method=start_method):
        assert ct.unordered_in_worker([2, 0, 3, 1]).result() == [2, 0, 3, 1]
        # An item's exception comes when it completes; the map ends there.
        got = ct.unordered_in_worker([2, 1, 0, 3], fail=1).result()
        assert got == [2, ("ValueError", "item 1 failed"), "stop", "stop"]


def test_unordered_process_map_raises_an_item_error_when_it_completes(tmp_path: Path) -> None:
    with Pool(processes=1, tasks_per_process=4) as pool:
        fails = [i == 1 for i in range(4)]
        values = ct.gated.map([str(tmp_path)] * 4, range(4), fails, ordered=False, chunksize=1)
        try:
            assert wait_until(lambda: _started(tmp_path, 4))
            _touch(tmp_path, "gate-2")
            assert next(values) == 2
            _touch(tmp_path, "gate-1")  # fails while 0 and 3 still wait
            with pytest.raises(ValueError, match=r"^item 1 failed$") as raised:
                next(values)
            assert isinstance(raised.value.__cause__, RemoteTraceback)
            assert "gated" in str(raised.value.__cause__)
            assert list(values) == []
        finally:
            for i in range(4):
                _touch(tmp_path, f"gate-{i}")
        assert pool.submit(abs, -3).result() == 3


# ---------------------------------------------------------------- chunks


def test_auto_chunksize_batches_many_tiny_items(monkeypatch: pytest.MonkeyPatch) -> None:
    with Pool(processes=1) as pool:
        sizes = _record_process_chunks(pool, monkeypatch)
        assert list(ct.twice.map(range(3000))) == [2 * i for i in range(3000)]
        assert sum(sizes) == 3000
        assert max(sizes) > 1
        # it grows step by step from one item: each chunk at most twice the
        # one before until the map's first result is back, then at most
        # CONFIRMED_GROWTH times
        assert sizes[0] == 1
        assert all(b <= CONFIRMED_GROWTH * a for a, b in itertools.pairwise(sizes))

        sizes.clear()
        assert list(ct.twice.map(range(500), buffersize=40)) == [2 * i for i in range(500)]
        assert max(sizes) <= 40 // 2  # with a buffersize, every slot can have one

        sizes.clear()
        assert list(ct.twice.map(range(23), chunksize=7)) == [2 * i for i in range(23)]
        assert sizes == [7, 7, 7, 2]

        sizes.clear()
        assert list(ct.twice_timed.map(range(20))) == [2 * i for i in range(20)]
        assert set(sizes) == {1}  # a timeout is per call: never batched


def test_subtask_map_chunksize_runs_that_many_items_per_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Pool(processes=1, threads=2) as pool:
        sizes = _record_subtask_chunks(pool, monkeypatch)
        got = list(ct.sub_ident.map(range(23), chunksize=5))
        assert [x for x, _ in got] == list(range(23))
        assert sizes == [5, 5, 5, 5, 3]
        # the items of one chunk ran in one thread
        for start in range(0, 23, 5):
            assert len({ident for _, ident in got[start : start + 5]}) == 1
        sizes.clear()
        assert list(ct.sub_twice.map(range(5))) == [0, 2, 4, 6, 8]
        assert sizes == [1] * 5  # default: one item per hop


# ---------------------------------------------------------------- errors


def test_an_item_exception_is_its_own_and_ends_the_map(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method) as pool:
        # One chunk holds items 0-4: item 2 raises KeyError, item 4 ValueError.
        values = ct.raise_for.map(range(10), chunksize=5)
        assert next(values) == 0
        assert next(values) == 1
        with pytest.raises(KeyError) as raised:
            next(values)
        assert raised.value.args == ("key 2",)
        cause = raised.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "_raise_for" in str(cause)
        assert "KeyError: 'key 2'" in str(cause)
        # As concurrent.futures.Executor.map: the iterator ends at the error.
        with pytest.raises(StopIteration):
            next(values)

        values = ct.raise_for.map(range(3, 10), chunksize=5)
        assert next(values) == 3
        with pytest.raises(ValueError, match=r"^value 4$"):
            next(values)

        # Unordered: the values of the chunk's other items still come.
        got, error = drain(ct.raise_for.map([5, 6, 7, 8], chunksize=4, ordered=False))
        assert got == [5, 6]
        assert isinstance(error, KeyError)
        assert error.args == ("key 7",)
        assert pool.submit(abs, -1).result() == 1


def test_subtask_map_errors_in_the_parent() -> None:
    import traceback

    with Pool(processes=1, threads=2):
        for chunksize in (1, 5):
            values = ct.sub_raise_for.map(range(10), chunksize=chunksize)
            assert [next(values), next(values)] == [0, 1]
            with pytest.raises(KeyError) as raised:
                next(values)
            assert raised.value.args == ("key 2",)
            frames = [f.name for f in traceback.extract_tb(raised.value.__traceback__)]
            assert "_raise_for" in frames  # the thread's frames are kept
            assert list(values) == []


def test_subtask_map_errors_inside_a_worker(start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method):
        got = ct.subtask_errors_in_worker().result()
        assert got == [[0, 1, ("KeyError", ("key 2",), True), []]] * 2
        error = ct.map_raises_in_worker().exception()
    assert isinstance(error, KeyError)
    assert error.args == ("key 2",)
    text = str(error.__cause__)
    assert "map_raises_in_worker" in text  # the process task's frame
    assert "_raise_for" in text  # and the subtask's, from its thread


def test_an_input_error_comes_after_the_values_taken_before_it() -> None:
    with Pool(processes=1, threads=2):
        for chunksize in (1, 4, 10):
            for task in (ct.twice, ct.sub_twice):
                for ordered in (True, False):
                    values = task.map(failing_input(5), chunksize=chunksize, ordered=ordered)
                    got, error = drain(values)
                    assert sorted(got) == [0, 2, 4, 6, 8], (task, chunksize, ordered)
                    assert isinstance(error, LookupError)
                    assert str(error) == "input ran dry"


# ---------------------------------------------------------------- early exit


def _early_exit(tmp_path: Path, how: str) -> None:
    """Take one value of a bounded map (one worker slot), wait until the next
    item runs, then leave the map ``how``; check how much input was taken."""
    counter = Counting(itertools.count())
    directory = str(tmp_path)
    values: Iterator[int] | None = ct.record_and_wait.map(
        itertools.repeat(directory), counter, chunksize=1, buffersize=4
    )
    assert values is not None
    try:
        if how == "break":
            for value in values:
                assert value == 0
                assert wait_until(lambda: 1 in ct.ran_items(tmp_path))
                break
            values = None  # the for loop's iterator was the only other reference
        else:
            assert next(values) == 0
            assert wait_until(lambda: 1 in ct.ran_items(tmp_path))
            if how == "close":
                values.close()  # type: ignore[attr-defined]
                assert list(values) == []
            else:
                values = None  # dropped
                if how == "del+gc":
                    gc.collect()
    finally:
        _touch(tmp_path, "gate")
    assert counter.taken == 1 + 4


@pytest.mark.parametrize("how", ["close", "break", "del"])
def test_early_exit_cancels_what_has_not_started(
    start_method: str, tmp_path: Path, how: str
) -> None:
    # gc is off: leaving the map must cancel at once, not when a cycle is collected.
    gc.disable()
    try:
        with Pool(processes=1, start_method=start_method) as pool:
            _early_exit(tmp_path, how)
            assert pool.submit(abs, -7).result() == 7  # the pool goes on
    finally:
        gc.enable()
    assert ct.ran_items(tmp_path) == {0, 1}  # 2, 3 and 4 never ran


def test_early_exit_by_del_and_gc(tmp_path: Path) -> None:
    with Pool(processes=1):
        _early_exit(tmp_path, "del+gc")
    assert ct.ran_items(tmp_path) == {0, 1}


@pytest.mark.parametrize("how", ["close", "break"])
def test_early_exit_cancels_subtasks_in_the_parent(how: str) -> None:
    control = Control(0)
    counter = Counting(itertools.count())
    gc.disable()
    try:
        with Pool(processes=1, threads=1):
            values = ct.sub_record.map(itertools.repeat(control), counter, buffersize=4)
            try:
                if how == "close":
                    assert next(values) == 0
                    assert wait_until(lambda: 1 in control.ran)
                    values.close()  # type: ignore[attr-defined]
                    assert list(values) == []
                else:
                    for value in values:
                        assert value == 0
                        assert wait_until(lambda: 1 in control.ran)
                        break
                    del values
            finally:
                control.gate.set()
            assert ct.sub_twice(4).result() == 8
    finally:
        gc.enable()
    assert control.ran == [0, 1]
    assert counter.taken == 5


@pytest.mark.parametrize("how", ["close", "break"])
def test_early_exit_cancels_subtasks_inside_a_worker(start_method: str, how: str) -> None:
    with Pool(processes=1, threads=1, start_method=start_method):
        ran, taken, (first, rest) = ct.early_exit_in_worker(how).result()
        assert ct.twice(5).result() == 10
    assert (ran, taken, first, rest) == ([0, 1], 5, 0, [])


def test_closing_a_chunked_subtask_map_cancels_its_chunks() -> None:
    control = Control(0, block_from=3)
    counter = Counting(range(100))
    with Pool(processes=1, threads=1):
        values = ct.sub_record.map(itertools.repeat(control), counter, chunksize=3, buffersize=9)
        try:
            assert next(values) == 0  # chunk 0-2 is done; chunk 3-5 starts and waits
            assert wait_until(lambda: 3 in control.ran)
            values.close()  # type: ignore[attr-defined]
        finally:
            control.gate.set()
    assert control.ran == [0, 1, 2, 3, 4, 5]  # the running chunk ends; 6-8 never ran
    assert counter.taken == 9


def test_an_unpicklable_item_fails_alone_and_its_chunk_is_cancelled_with_the_map(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = threading.Lock()  # cannot be pickled
    d = str(tmp_path)
    # chunk 0 runs (item 1 waits for the gate); chunk 1 sends its picklable
    # item alone and waits for the worker; chunk 2 fails at once, which ends
    # the unordered map: chunk 1's picklable item must never run.
    directories: list[Any] = [d, d, lock, d, lock, lock]
    with Pool(processes=1) as pool:
        values = ct.record_and_wait.map(directories, range(1, 7), chunksize=2, ordered=False)
        try:
            assert wait_until(lambda: 1 in ct.ran_items(tmp_path))
            with pytest.raises(TaskPicklingError, match="record_and_wait") as raised:
                next(values)
            assert "argument" in str(raised.value)
            assert list(values) == []
        finally:
            _touch(tmp_path, "gate")
        # the pickling error of one item did not cost its chunk-mate its value
        got, error = drain(ct.record_and_wait.map([d, lock], [0, 0], chunksize=2))
        assert got == [0]
        assert isinstance(error, TaskPicklingError)
        assert pool.submit(abs, -2).result() == 2
    assert ct.ran_items(tmp_path) == {0, 1, 2}
    assert not [r for r in caplog.records if "exception calling callback" in r.getMessage()]


def test_the_iterator_keeps_no_reference_to_a_value_handed_out() -> None:
    # As the standard library's Executor.map (CPython issue 14406).
    gc.disable()
    try:
        with Pool(processes=1, threads=2) as pool:
            maps: list[Iterator[ct.Box]] = [
                ct.boxed.map(range(6), chunksize=1),
                ct.boxed.map(range(6), chunksize=3),
                ct.boxed.map(range(6), ordered=False),
                ct.sub_boxed.map(range(6)),
                ct.sub_boxed.map(range(6), chunksize=2, ordered=False),
                pool.map(ct.Box, range(6)),
            ]
            for values in maps:
                seen = []
                for box in values:
                    seen.append(box.value)
                    ref = weakref.ref(box)
                    del box
                    assert ref() is None
                assert sorted(seen) == list(range(6))
    finally:
        gc.enable()
