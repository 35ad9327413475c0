"""``Pool.map`` (the Executor method): the standard library's semantics
(timeout from the call, ``TimeoutError`` while iterating, ``chunksize``, the
first exception ends it, ``close``), lazy with a bounded buffer as Python
3.14's ``buffersize``. Compared side by side with
``ThreadPoolExecutor.map`` where that is practical."""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import multiprocessing
import operator
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool

from . import collate_tasks as ct
from .collate_tasks import Counting
from .conftest import wait_until
from .test_collate import _record_process_chunks

pytestmark = pytest.mark.timeout(60)

PY314 = sys.version_info >= (3, 14)


def test_values_match_thread_pool_executor_map(start_method: str) -> None:
    cases: list[Callable[[Any], Iterator[Any]]] = [
        lambda ex: ex.map(pow, [2, 3, 4], [5, 2]),  # zip: the shortest wins
        lambda ex: ex.map(pow, range(10), itertools.repeat(2), chunksize=3),
        lambda ex: ex.map(abs, []),
        lambda ex: ex.map(abs),
        lambda ex: ex.map(operator.add, "abc", "xyz"),
        lambda ex: ex.map(divmod, [5, 5, 5, 5], [2, 1, 3, 5], timeout=30),
    ]
    with Pool(processes=2, start_method=start_method) as pool, ThreadPoolExecutor(2) as tpe:
        for case in cases:
            assert list(case(pool)) == list(case(tpe))
        assert list(pool.map(ct.twice, range(4))) == [0, 2, 4, 6]  # a decorated task


def test_chunksize_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    with Pool(processes=1) as pool:
        sizes = _record_process_chunks(pool, monkeypatch)
        assert list(pool.map(abs, range(-10, 0), chunksize=3)) == list(range(10, 0, -1))
        assert sizes == [3, 3, 3, 1]
        sizes.clear()
        assert list(pool.map(abs, range(-5, 0))) == [5, 4, 3, 2, 1]
        assert sizes == [1] * 5  # the standard library's default, chunksize=1


def test_bad_options_raise_the_standard_library_errors_at_the_call() -> None:
    counter = Counting(range(10))
    with Pool(processes=1) as pool:
        with pytest.raises(ValueError, match=r"^chunksize must be >= 1\.$"):
            pool.map(abs, counter, chunksize=0)
        for bad in (0, -1):
            with pytest.raises(ValueError, match=r"^buffersize must be None or > 0$"):
                pool.map(abs, counter, buffersize=bad)
        for wrong in ("foo", 2.0):
            with pytest.raises(TypeError, match=r"^buffersize must be an integer or None$"):
                pool.map(abs, counter, buffersize=wrong)  # type: ignore[arg-type]
        assert list(pool.map(abs, [-1], buffersize=True)) == [1]  # a bool is an int
    assert counter.taken == 0
    chunk_error = r"^chunksize must be >= 1\.$"
    with ProcessPoolExecutor(1) as ppe, pytest.raises(ValueError, match=chunk_error):
        ppe.map(abs, [1], chunksize=0)
    if PY314:  # the messages above are Python 3.14's
        with ThreadPoolExecutor(1) as tpe:
            with pytest.raises(ValueError, match=r"^buffersize must be None or > 0$"):
                tpe.map(abs, [1], buffersize=0)  # type: ignore[call-arg]
            with pytest.raises(TypeError, match=r"^buffersize must be an integer or None$"):
                tpe.map(abs, [1], buffersize=2.0)  # type: ignore[call-arg]


def test_task_map_checks_its_options_the_same_way() -> None:
    with pytest.raises(TypeError, match=r"^buffersize must be an integer or None"):
        ct.twice.map([1], buffersize=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^buffersize must be an integer or None"):
        ct.sub_twice.map([1], buffersize="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffersize"):
        ct.twice.map([1], buffersize=0)
    with pytest.raises(ValueError, match="chunksize"):
        ct.sub_twice.map([1], chunksize=0)


def test_input_is_pulled_lazily_with_a_bounded_buffer() -> None:
    with Pool(processes=1) as pool:
        # Python 3.14's test_map_buffersize_when_buffer_is_full: only
        # buffersize items are taken at the call.
        counter = Counting(range(100))
        values = pool.map(abs, counter, buffersize=2)
        assert counter.taken == 2
        assert next(values) == 0
        assert counter.taken == 3
        values.close()  # type: ignore[attr-defined]

        assert list(itertools.islice(pool.map(abs, itertools.count(), buffersize=2), 3)) == [
            0,
            1,
            2,
        ]
        both = pool.map(operator.add, itertools.count(), itertools.count(), buffersize=2)
        assert [next(both) for _ in range(3)] == [0, 2, 4]
        both.close()  # type: ignore[attr-defined]

        assert list(pool.map(abs, [], buffersize=2)) == []
        assert list(pool.map(abs, buffersize=2)) == []


def _process_executor(engine: str, start_method: str) -> concurrent.futures.Executor:
    if engine == "nestpool":
        return Pool(processes=2, start_method=start_method)
    return ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(start_method))


@pytest.mark.parametrize("engine", ["nestpool", "stdlib"])
def test_without_buffersize_the_input_is_taken_in_full_at_the_call(engine: str) -> None:
    # As Executor.map: the iterables are collected at the call (zip's rule:
    # up to the shortest), so a file closed right after map() was read.
    with _process_executor(engine, "forkserver") as executor:
        counter = Counting(range(100))
        values = executor.map(abs, counter)
        assert counter.taken == 100
        assert sum(values) == sum(range(100))
        shortest = Counting(range(3))
        assert list(executor.map(operator.add, itertools.count(), shortest)) == [0, 2, 4]


@pytest.mark.parametrize("engine", ["nestpool", "stdlib"])
def test_an_input_that_raises_raises_from_the_call(engine: str) -> None:
    with _process_executor(engine, "forkserver") as executor:
        with pytest.raises(LookupError, match="input ran dry"):
            executor.map(abs, ct.failing_input(5))
        assert list(executor.map(abs, [-1, -2])) == [1, 2]


@pytest.mark.parametrize("engine", ["nestpool", "stdlib"])
def test_a_map_never_iterated_still_runs_every_call(
    engine: str, start_method: str, tmp_path: Path
) -> None:
    # Every call is submitted at the call: a map made for its side effects
    # runs in full though no one takes its values (leaving the block waits).
    directory = str(tmp_path)
    (tmp_path / "gate").touch()
    with _process_executor(engine, start_method) as executor:
        executor.map(ct.touch_then_wait, itertools.repeat(directory), range(30))
        dropped = executor.map(ct.touch_then_wait, itertools.repeat(directory), range(30, 60))
        del dropped
        gc.collect()
    assert ct.ran_items(tmp_path) == set(range(60))


@pytest.mark.parametrize("engine", ["nestpool", "stdlib"])
def test_a_map_dropped_after_its_first_value_cancels_what_has_not_started(
    engine: str, tmp_path: Path
) -> None:
    directory = str(tmp_path)
    with _process_executor(engine, "forkserver") as executor:
        values = executor.map(ct.touch_then_wait, itertools.repeat(directory), range(50))
        assert next(values) == 0
        del values  # a started map, dropped: what has not started is cancelled
        gc.collect()
        (tmp_path / "gate").touch()
    ran = ct.ran_items(tmp_path)
    # Item 0 ran, and a few more had started (or been queued to a worker,
    # where the standard library can no longer cancel them); not the rest.
    assert 0 in ran
    assert len(ran) <= 10, sorted(ran)


def _blocked(release: threading.Event, i: int) -> int:
    if not release.wait(ct.GATE_SECONDS):
        raise TimeoutError("never released")
    return i


def test_timeout_counts_from_the_call_and_raises_while_iterating(tmp_path: Path) -> None:
    timeout = 2.0
    release = threading.Event()
    d = str(tmp_path)
    with Pool(processes=1) as pool, ThreadPoolExecutor(1) as tpe:
        assert pool.submit(abs, -1).result() == 1  # the worker is up
        ours = pool.map(ct.gated, [d] * 3, range(3), timeout=timeout)
        theirs = tpe.map(_blocked, [release] * 3, range(3), timeout=timeout)
        try:
            assert wait_until(lambda: (tmp_path / "started-0").exists())
            time.sleep(timeout + 0.1)  # the deadline passes while nobody iterates
            for values in (ours, theirs):
                asked = time.monotonic()
                with pytest.raises(concurrent.futures.TimeoutError):
                    next(values)
                # At once: the deadline was the call's plus timeout, not this
                # next()'s (which would take another `timeout` seconds).
                assert time.monotonic() - asked < timeout / 2
                # The iterator is finished: what had not started is cancelled.
                with pytest.raises(StopIteration):
                    next(values)
        finally:
            release.set()
            for i in range(3):
                (tmp_path / f"gate-{i}").touch()
    assert sorted(p.name for p in tmp_path.glob("started-*")) == ["started-0"]
    if sys.version_info >= (3, 11):
        assert concurrent.futures.TimeoutError is TimeoutError


def test_results_ready_before_the_deadline_are_not_a_timeout() -> None:
    with Pool(processes=1) as pool:
        assert list(pool.map(abs, [-1, -2, -3], timeout=30)) == [1, 2, 3]


def test_the_first_exception_ends_the_map_as_in_the_standard_library() -> None:
    with Pool(processes=1) as pool, ThreadPoolExecutor(1) as tpe:
        for executor in (pool, tpe):
            values = executor.map(int, ["1", "x", "3"])
            assert next(values) == 1
            with pytest.raises(ValueError, match=r"invalid literal for int\(\) .* 'x'"):
                next(values)
            with pytest.raises(StopIteration):
                next(values)


def test_close_ends_the_map_as_in_the_standard_library() -> None:
    # Python's test_map_close, on both executors.
    with Pool(processes=1) as pool, ThreadPoolExecutor(1) as tpe:
        for executor in (pool, tpe):
            for chunksize in (1, 3):
                values = executor.map(divmod, [5, 5, 5, 5], [2, 0, 3, 5], chunksize=chunksize)
                assert next(values) == (2, 1)
                values.close()  # type: ignore[attr-defined]
                with pytest.raises(StopIteration):
                    next(values)
                with pytest.raises(StopIteration):
                    next(values)


def test_with_processes_0_every_call_is_made_at_the_call(tmp_path: Path) -> None:
    # Inline, the same rule: the calls run at map(), in the caller; the values
    # (and the first exception, which ends the map) come in turn.
    directory = str(tmp_path)
    (tmp_path / "gate").touch()
    with Pool(processes=0) as pool:
        pool.map(ct.touch_then_wait, itertools.repeat(directory), range(5))
        assert ct.ran_items(tmp_path) == set(range(5))
        values = pool.map(ct._raise_for, range(6))
        assert next(values) == 0
        assert next(values) == 1
        with pytest.raises(KeyError, match="key 2"):
            next(values)
        with pytest.raises(StopIteration):
            next(values)
        assert list(pool.map(abs, range(-3, 0), buffersize=1)) == [3, 2, 1]
