"""A subtask's future keeps the ``concurrent.futures.Future`` contract while
its condition and waiter list are made only when first needed (a subtask
its caller runs itself, or finds done when it reads it, never needs them):
waits from other threads are woken, ``wait()`` and ``as_completed()`` see it
finish or be cancelled, callbacks run once, and a subtask its caller ran
itself is never run again by a pool thread."""

from __future__ import annotations

import _thread
import concurrent.futures as cf
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import _base
from typing import Any

import pytest

from nestpool._futures import SubtaskFuture, become_helper, stop_helping
from nestpool._subtask_pool import SubtaskPool

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def make_pool() -> Iterator[Callable[[int], SubtaskPool]]:
    """SubtaskPool(threads), shut down when the test ends."""
    made: list[SubtaskPool] = []

    def make(threads: int) -> SubtaskPool:
        made.append(SubtaskPool(threads, name=f"test-subtask-future-{len(made)}"))
        return made[-1]

    yield make
    for subtasks in made:
        subtasks.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def pool(make_pool: Callable[[int], SubtaskPool]) -> SubtaskPool:
    return make_pool(4)


def _held(release: threading.Event, value: int) -> int:
    assert release.wait(10)
    return value


def _fail() -> None:
    raise ValueError("boom")


def test_a_wait_from_another_thread_is_woken_when_a_pool_thread_finishes(
    pool: SubtaskPool,
) -> None:
    release = threading.Event()
    future = pool.submit(_held, (release, 7), {})
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(future.result(timeout=10)))
    waiter.start()
    with pytest.raises(cf.TimeoutError):
        future.result(timeout=0.05)  # still running: the condition is made and waited on
    release.set()
    waiter.join(10)
    assert got == [7]
    assert future.result() == 7


def test_wait_and_as_completed_see_subtasks_finish(pool: SubtaskPool) -> None:
    release = threading.Event()
    futures = [pool.submit(_held, (release, i), {}) for i in range(3)]
    done, not_done = cf.wait(futures, timeout=0.05)
    assert not done and len(not_done) == 3
    release.set()
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=10)) == [0, 1, 2]
    done, not_done = cf.wait(futures, timeout=10)
    assert len(done) == 3 and not not_done


def test_a_cancelled_subtask_never_runs_and_its_waiters_see_it(pool: SubtaskPool) -> None:
    ran = threading.Event()
    future: SubtaskFuture[None] = SubtaskFuture((ran.set, (), {}))  # never queued
    waiting = threading.Event()
    waiter_result: list[Any] = []

    def wait_on_it() -> None:
        waiting.set()
        done, _ = cf.wait([future], timeout=10)
        waiter_result.append(done)

    waiter = threading.Thread(target=wait_on_it)
    waiter.start()
    assert waiting.wait(10)
    assert future.cancel()
    # As with the standard library's executors, wait() learns of the
    # cancellation when the thread that takes the work reports it.
    future.run_here(helping=False)
    waiter.join(10)
    assert waiter_result == [{future}]
    assert not ran.is_set()
    assert future.cancelled()
    with pytest.raises(cf.CancelledError):
        future.result()


def test_a_cancelled_queued_subtask_is_skipped_by_the_pool(pool: SubtaskPool) -> None:
    release = threading.Event()
    blockers = [pool.submit(_held, (release, i), {}) for i in range(4)]  # every thread busy
    ran = threading.Event()
    queued = pool.submit(ran.set, (), {})
    assert queued.cancel()
    release.set()
    assert [b.result(timeout=10) for b in blockers] == [0, 1, 2, 3]
    last = pool.submit(int, ("5",), {})
    assert last.result(timeout=10) == 5  # the pool went past the cancelled one
    assert not ran.is_set()


def test_callbacks_run_once_before_and_after_completion(pool: SubtaskPool) -> None:
    release = threading.Event()
    future = pool.submit(_held, (release, 3), {})
    calls: list[int] = []
    future.add_done_callback(lambda f: calls.append(f.result()))
    release.set()
    assert future.result(timeout=10) == 3
    future.add_done_callback(lambda f: calls.append(f.result() * 10))
    assert calls == [3, 30]


def test_an_exception_is_the_futures_outcome(pool: SubtaskPool) -> None:
    future = pool.submit(_fail, (), {})
    assert isinstance(future.exception(timeout=10), ValueError)
    with pytest.raises(ValueError, match="boom"):
        future.result()


def test_a_call_and_wait_runs_each_subtask_exactly_once(pool: SubtaskPool) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def record(value: int) -> int:
        with lock:
            calls.append(value)
        return value

    become_helper()  # as a worker's task thread is: it runs what nobody started
    try:
        values = [pool.submit(record, (i,), {}).result() for i in range(300)]
    finally:
        stop_helping()
    assert values == list(range(300))
    # Each ran once, on this thread or on a pool thread that claimed it first;
    # the items this thread ran stay queued, and the pool threads that take
    # them later do not run them again (the queue is drained behind this one).
    assert pool.submit(int, ("0",), {}).result(timeout=10) == 0
    assert sorted(calls) == list(range(300))


def test_a_fresh_future_has_a_repr_and_wait_first_exception_sees_a_failure(
    pool: SubtaskPool,
) -> None:
    release = threading.Event()
    held = pool.submit(_held, (release, 1), {})
    assert "state=pending" in repr(SubtaskFuture((int, (), {})))  # its condition made on demand
    failing = pool.submit(_fail, (), {})
    done, not_done = cf.wait([held, failing], timeout=10, return_when=cf.FIRST_EXCEPTION)
    assert done == {failing} and not_done == {held}
    release.set()
    assert held.result(timeout=10) == 1


def test_a_full_pool_with_a_backlog_runs_every_item_within_its_threads(
    make_pool: Callable[[int], SubtaskPool],
) -> None:
    subtasks = make_pool(3)
    seen: set[int] = set()
    lock = threading.Lock()

    def record(value: int) -> int:
        with lock:
            seen.add(threading.get_ident())
        return value

    for _ in range(20):  # bursts bigger than the pool, idle between
        futures = [subtasks.submit(record, (i,), {}) for i in range(50)]
        assert [f.result(timeout=10) for f in futures] == list(range(50))
    assert len(subtasks._threads) <= 3
    assert len(seen) <= 3


def test_a_callback_raising_system_exit_does_not_cost_the_pool_its_thread(
    caplog: pytest.LogCaptureFixture, make_pool: Callable[[int], SubtaskPool]
) -> None:
    subtasks = make_pool(1)
    release = threading.Event()
    future = subtasks.submit(_held, (release, 1), {})

    def stop(_: object) -> None:
        raise SystemExit(3)

    future.add_done_callback(stop)
    with caplog.at_level("ERROR", logger="nestpool"):
        release.set()
        assert future.result(timeout=10) == 1
        # The one thread lives on and takes the next call.
        assert subtasks.submit(int, ("7",), {}).result(timeout=10) == 7
    assert "done-callback raised" in caplog.text
    assert len(subtasks.thread_idents()) == 1


def test_a_submit_whose_thread_cannot_start_fails_and_never_runs_later(
    monkeypatch: pytest.MonkeyPatch, make_pool: Callable[[int], SubtaskPool]
) -> None:
    subtasks = make_pool(2)
    release = threading.Event()
    first = subtasks.submit(_held, (release, 1), {})  # one thread, now busy

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    ran = threading.Event()
    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            subtasks.submit(ran.set, (), {})
    release.set()
    assert first.result(timeout=10) == 1
    # The busy thread took the refused call from the queue and skipped it.
    assert subtasks.submit(int, ("2",), {}).result(timeout=10) == 2
    assert not ran.is_set()


def test_cpython_future_internals_are_as_the_futures_module_states() -> None:
    # The items of _futures' block "CPython's Future internals" that a test
    # can see, checked on the Python that runs the suite.
    future: cf.Future[int] = cf.Future()
    assert set(vars(future)) == {
        "_condition",
        "_state",
        "_result",
        "_exception",
        "_waiters",
        "_done_callbacks",
    }
    assert future._state == _base.PENDING
    assert type(future._condition) is threading.Condition
    assert type(future._condition._lock) is _thread.RLock  # type: ignore[attr-defined]
    for name in ("_is_owned", "_release_save", "_acquire_restore"):
        assert hasattr(_thread.RLock(), name)
    assert type(_base._Waiter().event) is threading.Event
    assert callable(future._invoke_callbacks)  # type: ignore[attr-defined]
    assert future.cancel()
    assert future._state == _base.CANCELLED  # its waiters not told (gh-136655)
    assert not future.set_running_or_notify_cancel()
    assert future._state == _base.CANCELLED_AND_NOTIFIED
