"""A future the pool cancels is at once done for ``concurrent.futures.wait``
and ``as_completed``.

``Future.cancel()`` alone leaves the state CANCELLED, which those two count
as done only after an executor calls ``set_running_or_notify_cancel()``
(CPython gh-136655); a future the pool cancels is never reached by an
executor, so they would wait their whole timeout for it. Each test cancels
futures the way the pool does and checks that ``wait(fs, timeout=5)`` returns
them in ``done`` and that ``as_completed`` yields them all (either would wait
the 5 seconds, and report them not done, if they were not notified).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, as_completed, wait
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, WorkerDiedError, _dispatcher, _futures, _subtask_pool, thread_subtask
from tests import core_tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)


def assert_seen_done(futures: list[Future[Any]]) -> None:
    """Every future is cancelled, and wait/as_completed see it so at once."""
    assert futures
    assert all(f.cancelled() for f in futures)
    done, not_done = wait(futures, timeout=5)
    assert not not_done, f"{len(not_done)} cancelled futures not seen as done by wait()"
    assert done == set(futures)
    assert set(as_completed(futures, timeout=5)) == set(futures)


def _hold(tmp_path: Path) -> tuple[Path, Path, Future[Any]]:
    """A process task that holds the pool's one worker until ``release`` exists."""
    ready, release = tmp_path / "ready", tmp_path / "release"
    running = core_tasks.hold(str(ready), str(release), "held")
    assert wait_until(ready.exists, 30)
    return ready, release, running


@pytest.mark.parametrize("wait_for_work", [False, True])
def test_shutdown_cancel_futures(tmp_path: Path, wait_for_work: bool) -> None:
    pool = Pool(processes=1)
    _ready, release, running = _hold(tmp_path)
    queued = [core_tasks.pid_after(0) for _ in range(4)]
    if wait_for_work:
        # shutdown(wait=True) returns only when the held task ends: look from
        # another thread, which then lets the held task go.
        seen: list[BaseException] = []

        def look() -> None:
            try:
                assert wait_until(lambda: all(f.cancelled() for f in queued), 30)
                assert_seen_done(queued)
            except BaseException as exc:
                seen.append(exc)
            finally:
                release.touch()

        looker = threading.Thread(target=look, name="test-look")
        looker.start()
        pool.shutdown(wait=True, cancel_futures=True)
        looker.join()
        assert not seen, seen
    else:
        pool.shutdown(wait=False, cancel_futures=True)
        assert_seen_done(queued)
        release.touch()
    assert running.result(timeout=30) == "held"
    pool.shutdown()


def test_leaving_the_with_block_by_an_exception(tmp_path: Path) -> None:
    seen: list[BaseException] = []
    queued: list[Future[Any]] = []

    def look(release: Path) -> None:
        try:
            # Waiting before the pool cancels them: the waiters must be woken.
            done, not_done = wait(queued, timeout=5)
            assert not not_done and all(f.cancelled() for f in done)
        except BaseException as exc:
            seen.append(exc)
        finally:
            release.touch()

    held: list[Future[Any]] = []
    lookers: list[threading.Thread] = []

    def submit_then_fail() -> None:
        with Pool(processes=1):
            _ready, release, running = _hold(tmp_path)
            held.append(running)
            queued.extend(core_tasks.pid_after(0) for _ in range(4))
            looker = threading.Thread(target=look, args=(release,), name="test-look")
            lookers.append(looker)
            looker.start()
            raise KeyError("leave")

    with pytest.raises(KeyError):
        submit_then_fail()
    lookers[0].join()
    assert not seen, seen
    assert_seen_done(queued)
    assert held[0].result(timeout=30) == "held"


def test_a_terminated_pool(tmp_path: Path) -> None:
    pool = Pool(processes=1)
    _ready, _release, running = _hold(tmp_path)
    queued = [core_tasks.pid_after(0) for _ in range(4)]
    pool.terminate()
    assert_seen_done(queued)
    with pytest.raises(WorkerDiedError):
        running.result(timeout=30)


@pytest.mark.parametrize("ordered", [True, False])
def test_a_process_map_closed_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ordered: bool
) -> None:
    # The futures of a map's units are the pool's own: catch them on their way
    # to the dispatcher.
    units: list[Future[Any]] = []
    submit: Callable[[Any, Any], None] = _dispatcher.Dispatcher.submit

    def recording(self: Any, task: Any) -> None:
        units.append(task.future)
        submit(self, task)

    monkeypatch.setattr(_dispatcher.Dispatcher, "submit", recording)
    ready, release = tmp_path / "ready", tmp_path / "release"
    with Pool(processes=1):
        items = core_tasks.hold.map(
            [str(ready)] * 20, [str(release)] * 20, range(20), ordered=ordered, chunksize=1
        )
        assert wait_until(ready.exists, 30)
        items.close()  # type: ignore[attr-defined]
        cancelled = [f for f in units if f.cancelled()]
        assert len(cancelled) >= 2  # all but the one that runs
        assert_seen_done(cancelled)
        release.touch()


@thread_subtask
def _wait_for_event(event: threading.Event, value: int) -> int:
    assert event.wait(30)
    return value


def _recording_subtask_submits(monkeypatch: pytest.MonkeyPatch) -> list[Future[Any]]:
    futures: list[Future[Any]] = []
    submit = _subtask_pool.SubtaskPool.submit

    def recording(self: Any, fn: Any, args: Any, kwargs: Any) -> Any:
        future = submit(self, fn, args, kwargs)
        futures.append(future)
        return future

    monkeypatch.setattr(_subtask_pool.SubtaskPool, "submit", recording)
    return futures


def test_a_subtask_map_closed_early(monkeypatch: pytest.MonkeyPatch) -> None:
    futures = _recording_subtask_submits(monkeypatch)
    event = threading.Event()
    with Pool(threads=1):
        items = _wait_for_event.map([event] * 20, range(20))
        assert wait_until(lambda: bool(futures) and futures[0].running(), 30)
        items.close()  # type: ignore[attr-defined]
        cancelled = [f for f in futures if f.cancelled()]
        assert len(cancelled) >= 2
        assert_seen_done(cancelled)
        event.set()


def test_the_subtask_pools_shutdown_cancel_futures() -> None:
    event = threading.Event()
    pool = Pool(threads=1)
    running = _wait_for_event(event, 0)
    assert wait_until(running.running, 30)
    queued = [_wait_for_event(event, i) for i in range(1, 5)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert_seen_done(queued)
    event.set()
    assert running.result(timeout=30) == 0


def test_a_subtask_claimed_after_its_cancel_is_skipped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A waiting thread may claim a subtask the pool has cancelled and
    # notified: it must skip it, not try to notify again (which raises, and
    # logs CRITICAL on the concurrent.futures logger).
    future: _futures.SubtaskFuture[int] = _futures.SubtaskFuture((pow, (2, 3), {}))
    assert _futures.cancel_notified(future)
    assert_seen_done([future])
    future.run_here(helping=True)
    assert future.cancelled()
    assert not [r for r in caplog.records if r.name == "concurrent.futures"]


def test_cancel_notified_and_start_unless_cancelled_on_every_state() -> None:
    pending: Future[int] = Future()
    assert _futures.cancel_notified(pending)
    assert _futures.cancel_notified(pending)  # again: still cancelled, no error
    assert not _futures.start_unless_cancelled(pending)
    assert_seen_done([pending])

    running: Future[int] = Future()
    assert _futures.start_unless_cancelled(running)
    assert _futures.start_unless_cancelled(running)  # already running
    assert not _futures.cancel_notified(running)
    running.set_result(1)
    assert not _futures.start_unless_cancelled(running)  # finished

    # Cancelled by its holder (Future.cancel() alone): the executor's start
    # notifies, as the standard library's does.
    user_cancelled: Future[int] = Future()
    user_cancelled.cancel()
    assert not _futures.start_unless_cancelled(user_cancelled)
    assert_seen_done([user_cancelled])
