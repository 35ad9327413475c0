"""``gather(futures, *, return_exceptions=False)``: values in the given order;
the first failure raised as soon as it happens; exceptions in the list with
``return_exceptions``; any ``concurrent.futures.Future``."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from nestpool import Pool, gather
from nestpool._serialize import RemoteTraceback

from . import collate_tasks as ct

pytestmark = pytest.mark.timeout(60)

#: a slow future's task waits this long for its event: long enough that a
#: gather which waited for it would be seen to have waited (it is set at once
#: after the gather returns when all is well)
SLOW = 15.0


def _raise(exc: BaseException) -> None:
    raise exc


def test_values_come_in_the_given_order_not_completion_order() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(2) as executor:
        slow = executor.submit(lambda: release.wait(SLOW) and "slow")
        fast = executor.submit(lambda: "fast")
        assert fast.result() == "fast"
        release.set()
        assert gather([slow, fast]) == ["slow", "fast"]


def test_the_first_failure_is_raised_before_a_slow_earlier_future_ends() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(2) as executor:
        slow = executor.submit(release.wait, SLOW)
        try:
            failing = executor.submit(_raise, KeyError("boom"))
            with pytest.raises(KeyError, match="boom"):
                gather([slow, failing])
            assert not slow.done()  # gather did not wait for it
        finally:
            release.set()


def test_a_cancelled_future_is_a_failure_raised_at_once() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(1) as executor:
        slow = executor.submit(release.wait, SLOW)
        try:
            # Cancelled before gather: a future no executor will ever notify.
            cancelled: Future[int] = Future()
            assert cancelled.cancel()
            with pytest.raises(CancelledError):
                gather([slow, cancelled])
            assert not slow.done()
            # Cancelled while gather waits: queued behind the slow one.
            queued = executor.submit(int, 3)
            canceller = threading.Thread(target=queued.cancel)
            canceller.start()
            with pytest.raises(CancelledError):
                gather([slow, queued])
            canceller.join()
            assert not slow.done()
        finally:
            release.set()


def test_return_exceptions_puts_each_outcome_in_its_place() -> None:
    cancelled: Future[int] = Future()
    cancelled.cancel()
    with ThreadPoolExecutor(2) as executor:
        futures = [
            executor.submit(int, "7"),
            executor.submit(_raise, ValueError("bad")),
            cancelled,
            executor.submit(_raise, KeyboardInterrupt()),
        ]
        outcomes = gather(futures, return_exceptions=True)
    assert outcomes[0] == 7
    assert type(outcomes[1]) is ValueError
    assert str(outcomes[1]) == "bad"
    assert isinstance(outcomes[2], CancelledError)
    assert isinstance(outcomes[3], KeyboardInterrupt)
    assert len(outcomes) == 4


def test_empty_inputs_and_generators() -> None:
    assert gather([]) == []
    assert gather([], return_exceptions=True) == []
    assert gather(f for f in []) == []
    done: Future[int] = Future()
    done.set_result(5)
    assert gather(f for f in [done, done]) == [5, 5]


def test_inline_futures_without_a_pool() -> None:
    # No pool open: calls run inline and return completed futures.
    assert gather([ct.twice(1), ct.sub_twice(2)]) == [2, 4]
    outcomes = gather([ct.raise_for(2), ct.twice(3)], return_exceptions=True)
    assert isinstance(outcomes[0], KeyError)
    assert outcomes[1] == 6
    with pytest.raises(KeyError, match="key 2"):
        gather([ct.twice(3), ct.sub_raise_for(2)])


def test_process_and_subtask_futures(start_method: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with Pool(processes=1, tasks_per_process=2, threads=2, start_method=start_method):
        assert gather([ct.twice(i) for i in range(5)]) == [0, 2, 4, 6, 8]
        assert gather(ct.sub_twice(i) for i in range(5)) == [0, 2, 4, 6, 8]
        mixed = [ct.twice(1), ct.sub_twice(2), ct.raise_for(4), ct.sub_raise_for(7)]
        outcomes = gather(mixed, return_exceptions=True)
        assert outcomes[:2] == [2, 4]
        assert type(outcomes[2]) is ValueError and str(outcomes[2]) == "value 4"
        assert isinstance(outcomes[2].__cause__, RemoteTraceback)
        assert "_raise_for" in str(outcomes[2].__cause__)
        assert type(outcomes[3]) is KeyError and outcomes[3].args == ("key 7",)

        # A process task that fails while an earlier one still waits.
        slow = ct.wait_for_file_then(str(gate), 1)
        try:
            with pytest.raises(ValueError, match="value 9"):
                gather([slow, ct.raise_for(9)])
            assert not slow.done()
        finally:
            gate.touch()
        assert slow.result() == 1


def test_subtask_failure_is_raised_before_a_slow_subtask_ends() -> None:
    control = ct.Control(1)
    with Pool(processes=1, threads=2):
        slow = ct.sub_gated(control, 0)
        try:
            with pytest.raises(ValueError, match="value 4"):
                gather([slow, ct.sub_raise_for(4)])
            assert not slow.done()
        finally:
            control.gates[0].set()
        assert slow.result() == 0
