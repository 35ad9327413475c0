"""Worker deaths, timeouts, failing initializers and worker retirement, caused
for real (SIGKILL, os._exit, a segfault, RLIMIT_AS, the OOM killer's SIGKILL).

What must hold (docs/faults.md): a death fails only the tasks that worker was
running, with a WorkerDiedError naming the task, the pid and the exit code or
signal; the worker is replaced; every other task completes; the pool goes on.
"""

from __future__ import annotations

import concurrent.futures
import operator
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import BrokenExecutor, Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import psutil
import pytest

from nestpool import (
    InitializerError,
    NestpoolError,
    Pool,
    TaskPicklingError,
    TaskTimeoutError,
    WorkerDiedError,
)
from nestpool._dispatcher import Dispatcher
from nestpool._records import Task, TaskState
from nestpool._serialize import RemoteTraceback, as_outcomes, dumps
from nestpool._tasks import TaskTable
from nestpool._workers import MAX_STARTUP_DEATHS
from tests import fault_tasks as ft
from tests.conftest import START_METHODS, record_started_workers, wait_until
from tests.helpers import local_engine

pytestmark = pytest.mark.timeout(60)


def _dispatcher(pool: Pool) -> Dispatcher:
    return local_engine(pool).get_dispatcher()


def _wait_ready(directory: Path, name: str, timeout: float = 30) -> int:
    assert wait_until(lambda: ft.read_ready(str(directory), name) is not None, timeout), (
        f"task {name!r} never started"
    )
    pid = ft.read_ready(str(directory), name)
    assert pid is not None
    return pid


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ------------------------------------------------------------------ deaths

DEATHS = {
    # kind: (exitcode, signal name, words in the message)
    "sigkill": (-signal.SIGKILL, "SIGKILL", ["killed by SIGKILL", "out-of-memory"]),
    "exit": (3, None, ["exited with exit code 3", "os._exit()"]),
    "segfault": (-signal.SIGSEGV, "SIGSEGV", ["killed by SIGSEGV", "native code"]),
}


def _cause_death(kind: str, directory: Path) -> tuple[Future[Any], int | None]:
    """Start the fatal task; return its future and the victim pid if known."""
    if kind == "sigkill":
        future = ft.hold(str(directory), "victim")
        pid = _wait_ready(directory, "victim")
        os.kill(pid, signal.SIGKILL)
        return future, pid
    if kind == "exit":
        return ft.exit_now(3, str(directory)), None
    return ft.segfault(str(directory)), None


@pytest.mark.parametrize("kind", sorted(DEATHS))
def test_a_death_fails_only_its_task_and_the_pool_goes_on(
    start_method: str, kind: str, tmp_path: Path
) -> None:
    exitcode, signal_name, words = DEATHS[kind]
    with Pool(processes=2, threads=2, start_method=start_method) as pool:
        started_workers = record_started_workers(pool)
        before = [ft.square(i) for i in range(100)]
        victim, known_pid = _cause_death(kind, tmp_path)
        after = [ft.square(i) for i in range(100, 200)]
        with pytest.raises(WorkerDiedError) as info:
            victim.result(timeout=30)
        error = info.value
        # The 200 tasks around the death all completed with their values.
        assert [f.result(timeout=30) for f in before + after] == [i * i for i in range(200)]

        name = {"sigkill": "hold", "exit": "exit_now", "segfault": "segfault"}[kind]
        assert error.task_name == name
        assert error.exitcode == exitcode
        assert error.signal == signal_name
        assert isinstance(error.task_id, int)
        if known_pid is not None:
            assert error.pid == known_pid
        assert error.pid in started_workers
        message = str(error)
        assert f"task {name!r} (id {error.task_id})" in message
        assert f"pid {error.pid}" in message
        for word in words:
            assert word in message, message
        assert message.endswith("Other tasks were not affected."), message
        assert isinstance(error, BrokenProcessPool)
        assert isinstance(error, NestpoolError)
        # It ran once: a started task is never sent again.
        if kind != "sigkill":
            assert len(ft.read_runs(str(tmp_path))) == 1

        # A replacement started (a new pid), and the pool runs new work.
        assert wait_until(lambda: len(pool.worker_pids()) == 2, 30)
        assert error.pid not in pool.worker_pids()
        assert _gone(error.pid)
        assert len(started_workers) == 3
        assert ft.square(12).result(timeout=30) == 144
        assert sum(ft.square.map(range(50))) == sum(i * i for i in range(50))


def test_a_death_fails_every_task_of_that_worker_and_only_those(
    start_method: str, tmp_path: Path
) -> None:
    # tasks_per_process=3: one worker runs three tasks at once; its death fails
    # exactly those three, the three on the other worker finish.
    with Pool(processes=2, threads=2, tasks_per_process=3, start_method=start_method):
        futures = {f"t{i}": ft.hold_until(str(tmp_path), f"t{i}", "gate") for i in range(6)}
        pids = {name: _wait_ready(tmp_path, name) for name in futures}
        assert sorted(Counter(pids.values()).values()) == [3, 3]
        victim = pids["t0"]
        os.kill(victim, signal.SIGKILL)
        doomed = {name for name, pid in pids.items() if pid == victim}
        for name in doomed:
            with pytest.raises(WorkerDiedError) as info:
                futures[name].result(timeout=30)
            assert info.value.pid == victim
            assert info.value.signal == "SIGKILL"
            assert info.value.task_name == "hold_until"
            assert "The 2 other tasks running in that worker failed with it" in str(info.value)
        (tmp_path / "gate").touch()
        for name in set(futures) - doomed:
            assert futures[name].result(timeout=30) == pids[name] != victim
        assert ft.square(3).result(timeout=30) == 9


def test_an_idle_worker_that_dies_is_replaced_and_nothing_fails(start_method: str) -> None:
    with Pool(processes=2, start_method=start_method) as pool:
        started_workers = record_started_workers(pool)
        assert [f.result(timeout=30) for f in [ft.square(i) for i in range(4)]] == [0, 1, 4, 9]
        victim = pool.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: victim not in pool.worker_pids(), 30)
        assert [f.result(timeout=30) for f in [ft.square(i) for i in range(20)]] == [
            i * i for i in range(20)
        ]
        assert wait_until(lambda: len(pool.worker_pids()) == 2, 30)
        assert len(started_workers) == 3


def test_sys_exit_in_a_task_is_an_exception_not_a_death() -> None:
    # As in ProcessPoolExecutor: SystemExit raised by the task is its outcome;
    # the worker does not exit.
    with Pool(processes=1) as pool:
        pid = ft.getpid().result(timeout=30)
        error = ft.call_sys_exit(4).exception(timeout=30)
        assert isinstance(error, SystemExit)
        assert error.code == 4
        assert ft.getpid().result(timeout=30) == pid
        assert pool.worker_pids() == [pid]


def test_a_memory_error_is_an_ordinary_exception(tmp_path: Path) -> None:
    # Under an RLIMIT_AS cap a big allocation raises MemoryError in the task:
    # an exception like any other (in the future); the worker lives on.
    limit = 256 * 2**20
    with Pool(processes=1, initializer=ft.limit_address_space, initargs=(limit,)) as pool:
        pid = ft.getpid().result(timeout=30)
        failed = ft.allocate(4 * limit)
        with pytest.raises(MemoryError) as info:
            failed.result(timeout=30)
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "bytearray(nbytes)" in str(info.value.__cause__)
        assert ft.allocate(2**20).result(timeout=30) == 2**20
        assert pool.worker_pids() == [pid]


def test_the_oom_killers_sigkill_names_the_likely_cause(tmp_path: Path) -> None:
    # The test plays the OOM killer: it watches the worker's memory grow and
    # SIGKILLs it past a threshold, as the kernel would.
    with Pool(processes=1) as pool:
        future = ft.grow_memory(str(tmp_path), 8 * 2**20, 30.0)
        worker = psutil.Process(_wait_ready(tmp_path, "grow"))
        assert wait_until(lambda: worker.memory_info().rss > 100 * 2**20, 30)
        worker.kill()
        with pytest.raises(WorkerDiedError) as info:
            future.result(timeout=30)
        assert info.value.signal == "SIGKILL"
        assert info.value.pid == worker.pid
        assert "often the out-of-memory killer" in str(info.value)
        assert ft.square(5).result(timeout=30) == 25
        assert worker.pid not in pool.worker_pids()


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_chunk_whose_worker_died_reruns_only_its_unstarted_items(
    start_method: str, how: str, tmp_path: Path
) -> None:
    directory = str(tmp_path)
    n, bad = 8, 3
    with Pool(processes=2, threads=2, start_method=start_method) as pool:
        dispatcher = _dispatcher(pool)
        # Build the chunk the way Pool.map does, to read every item's outcome.
        # (a chunk travels as its items' positional-argument tuples)
        items: list[tuple[Any, ...]] = [(x, bad, directory, how) for x in range(n)]
        chunk: Future[Any] = Future()
        payload = ft.chunk_item._self_options.get_payload()
        dispatcher.submit(Task(10**9, "chunk_item", payload, dumps(items), chunk, None, items))
        if how == "kill":
            os.kill(_wait_ready(tmp_path, "bad"), signal.SIGKILL)
        outcomes = as_outcomes(chunk.result(timeout=30))

    runs = ft.read_runs(directory)
    first_pid = runs[0][1]
    # Items before the bad one ran once, on the first worker, and kept their values.
    assert outcomes[:bad] == [(True, x * 10) for x in range(bad)]
    assert [item for item, pid in runs if pid == first_pid] == list(range(bad + 1))
    # The item that was running gets the death.
    ok, error = outcomes[bad]
    assert not ok
    assert isinstance(error, WorkerDiedError)
    assert error.pid == first_pid
    assert error.signal == ("SIGKILL" if how == "kill" else None)
    # The items not started ran again elsewhere, once each, with their values.
    assert outcomes[bad + 1 :] == [(True, x * 10) for x in range(bad + 1, n)]
    rerun = [(item, pid) for item, pid in runs if pid != first_pid]
    assert sorted(item for item, _ in rerun) == list(range(bad + 1, n))
    assert len(runs) == n  # nothing ran twice


def test_a_map_over_a_dying_item_raises_it_in_order(start_method: str, tmp_path: Path) -> None:
    directory = str(tmp_path)
    with Pool(processes=2, start_method=start_method):
        values = ft.chunk_item.map(range(6), [2] * 6, [directory] * 6, ["exit"] * 6, chunksize=6)
        assert next(values) == 0
        assert next(values) == 10
        with pytest.raises(WorkerDiedError, match="task 'chunk_item'"):
            next(values)
        # The pool goes on; the unstarted items of the chunk were run again.
        assert ft.square(9).result(timeout=30) == 81
    assert sorted(item for item, _ in ft.read_runs(directory)) == list(range(6))


def test_a_task_sent_but_not_started_when_its_worker_dies_runs_on_another(
    start_method: str, tmp_path: Path
) -> None:
    # A stopped worker cannot acknowledge: the task sits SENT in its pipe. When
    # the worker is killed the task must be re-sent (never failed, never twice).
    directory = str(tmp_path)
    with Pool(processes=1, start_method=start_method) as pool:
        pid = ft.getpid().result(timeout=30)
        os.kill(pid, signal.SIGSTOP)
        try:
            future = ft.logged_square(7, directory)
            workers = _dispatcher(pool)._workers
            assert wait_until(
                lambda: any(
                    task.state is TaskState.SENT
                    for worker in workers.handles()
                    for task in list(worker.tasks.values())
                ),
                10,
            )
        finally:
            os.kill(pid, signal.SIGKILL)
        assert future.result(timeout=30) == 49
        (run,) = ft.read_runs(directory)
        assert run[0] == 7
        assert run[1] != pid
        assert run[1] in pool.worker_pids()


def test_a_stale_slot_never_overwrites_a_finished_items_result() -> None:
    # A worker that died right after reporting item p, before it marked item
    # p + 1 as running, still shows p in its slot: p keeps its value, and the
    # items after it run again.
    tasks = TaskTable()
    pairs: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((x,), {}) for x in range(4)]
    task = Task(1, "t", b"", dumps(pairs), Future(), None, pairs)
    tasks.add(task)
    assert tasks.next_to_send() is task
    task.move(TaskState.SENT)
    task.move(TaskState.RUNNING)
    chunk = task.chunk
    assert chunk is not None
    chunk.outcomes[0] = (True, "zero")
    chunk.outcomes[1] = (True, "one")

    # the runner's mark still points at the item it finished last
    tasks.lose(task, WorkerDiedError("died"), 1, rerun=True)
    assert chunk.outcomes[:2] == [(True, "zero"), (True, "one")]
    assert task.state is TaskState.PENDING
    assert chunk.indices == [2, 3]
    assert list(tasks.pending) == [task]


# ---------------------------------------------------------------- timeouts


def test_a_timeout_stops_and_replaces_the_worker(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method):
        pid = ft.getpid().result(timeout=30)  # the worker is up: time the task alone
        for task in (ft.sleep_timed, ft.spin_timed):
            started = time.monotonic()
            future = task(30.0)
            with pytest.raises(TaskTimeoutError) as info:
                future.result(timeout=30)
            took = time.monotonic() - started
            assert took < 0.5 + 1.0, took
            error = info.value
            assert isinstance(error, TimeoutError)
            assert isinstance(error, concurrent.futures.TimeoutError)
            assert error.task_name == task.__qualname__
            assert error.timeout == 0.5
            assert f"task {task.__qualname__!r}" in str(error)
            assert "timeout of 0.5s" in str(error)
            assert f"pid {pid}" in str(error)
            assert wait_until(lambda stopped=pid: _gone(stopped), 10)  # type: ignore[misc]
            new = ft.getpid().result(timeout=30)
            assert new != pid
            pid = new
        assert ft.sleep_timed(0.01).result(timeout=30) == "finished"


def test_a_timeout_fails_the_other_tasks_of_its_worker_saying_why(
    start_method: str, tmp_path: Path
) -> None:
    with Pool(processes=1, tasks_per_process=2, start_method=start_method) as pool:
        sibling = ft.hold_until(str(tmp_path), "sibling", "gate")
        pid = _wait_ready(tmp_path, "sibling")
        timed = ft.sleep_timed(30.0)
        with pytest.raises(TaskTimeoutError):
            timed.result(timeout=30)
        with pytest.raises(WorkerDiedError) as info:
            sibling.result(timeout=30)
        error = info.value
        assert error.pid == pid
        assert error.task_name == "hold_until"
        assert error.signal == "SIGKILL"
        message = str(error)
        assert "stopped because task 'sleep_timed'" in message, message
        assert "ran past its timeout of 0.5s" in message, message
        assert ft.square(4).result(timeout=30) == 16
        assert pid not in pool.worker_pids()


def test_a_worker_stopped_for_a_timeout_is_sent_no_more_work(tmp_path: Path) -> None:
    # When a task times out its slot frees at once, but its worker is being
    # killed: the task waiting in the queue must go to the replacement, not to
    # the dying worker (where an acknowledged start would fail it for nothing).
    directory = str(tmp_path)
    with Pool(processes=1, tasks_per_process=2) as pool:
        workers = _dispatcher(pool)._workers
        sent: list[tuple[str, int]] = []
        send_call = workers.send_call

        def record(worker: Any, task: Task) -> None:
            sent.append((task.name, worker.pid))
            send_call(worker, task)

        workers.send_call = record  # type: ignore[method-assign]
        sibling = ft.hold_until(directory, "sibling", "gate")
        pid = _wait_ready(tmp_path, "sibling")
        timed = ft.sleep_timed(30.0)
        queued = ft.logged_square(8, directory)  # both slots are busy: it waits
        with pytest.raises(TaskTimeoutError):
            timed.result(timeout=30)
        assert queued.result(timeout=30) == 64
        with pytest.raises(WorkerDiedError, match="ran past its timeout"):
            sibling.result(timeout=30)
    assert ("logged_square", pid) not in sent, sent
    ((item, ran_on),) = ft.read_runs(directory)
    assert item == 8
    assert ran_on != pid


def test_timed_items_of_a_map_each_get_their_own_limit() -> None:
    # Three items of 0.4 s each would pass a 1 s limit shared by a chunk: each
    # item is a task of its own (chunksize is ignored for a timed task).
    with Pool(processes=2) as pool:
        values = ft.timed_item.map(range(4), [3] * 4, chunksize=4)
        assert [next(values) for _ in range(3)] == [100, 101, 102]
        with pytest.raises(TaskTimeoutError, match="timed_item"):
            next(values)
        values = pool.map(ft.timed_item, range(4), [3] * 4, chunksize=4)
        assert [next(values) for _ in range(3)] == [100, 101, 102]
        with pytest.raises(TaskTimeoutError):
            next(values)


def test_a_result_racing_its_timeout_ends_one_way_exactly_once() -> None:
    calls: Counter[int] = Counter()
    lock = threading.Lock()

    def count(future: Future[Any]) -> None:
        with lock:
            calls[id(future)] += 1

    with Pool(processes=2) as pool:
        futures = []
        for i in range(8):
            future = ft.near_timeout(0.27 + 0.008 * i)
            future.add_done_callback(count)
            futures.append(future)
        outcomes: Counter[str] = Counter()
        for future in futures:
            try:
                assert future.result(timeout=30) == pytest.approx(0.27, abs=0.06)
                outcomes["value"] += 1
            except TaskTimeoutError:
                outcomes["timeout"] += 1
        assert sum(outcomes.values()) == 8
        assert wait_until(lambda: len(calls) == 8, 10)
        assert set(calls.values()) == {1}
        assert ft.square(2).result(timeout=30) == 4
        # a worker stopped by the last timeout may still be being replaced
        assert wait_until(lambda: len(pool.worker_pids()) == 2, 10)


# ------------------------------------------------------------ initializers


def _children() -> list[psutil.Process]:
    from tests.conftest import _stray_children

    return _stray_children()


def test_a_failing_initializer_breaks_the_pool_without_a_respawn_loop(
    start_method: str,
) -> None:
    with Pool(
        processes=2,
        start_method=start_method,
        initializer=ft.failing_initializer,
        initargs=("no database",),
    ) as pool:
        started_workers = record_started_workers(pool)
        started = time.monotonic()
        pending = [ft.square(i) for i in range(5)]
        errors = []
        for future in pending:
            with pytest.raises(InitializerError) as info:
                future.result(timeout=30)
            errors.append(info.value)
        assert time.monotonic() - started < 5
        error = errors[0]
        assert isinstance(error, BrokenExecutor)
        assert isinstance(error, BrokenProcessPool)
        assert "ValueError: no database" in str(error)
        assert "failing_initializer" in error.traceback_text
        assert "raise ValueError(message)" in error.traceback_text
        assert isinstance(error.__cause__, RemoteTraceback)
        assert "failing_initializer" in str(error.__cause__)
        # New work fails the same way, at once (the call itself does not raise).
        late = ft.square(1)
        with pytest.raises(InitializerError, match="no database"):
            late.result(timeout=5)
        # No respawn loop: the two workers started, and no other ever will.
        assert wait_until(lambda: not _children(), 10)
        assert len(started_workers) == 2
        assert not wait_until(lambda: len(started_workers) > 2 or bool(_children()), 0.5)


@pytest.mark.parametrize(
    ("start_method", "initializer", "args", "words"),
    [
        *[
            (method, ft.exiting_initializer, (3,), "exited with exit code 3")
            for method in START_METHODS
        ],
        ("forkserver", ft.crashing_initializer, (), "killed by SIGSEGV"),
        # as the OOM killer would kill an initializer that allocates too much
        ("forkserver", ft.sigkill_initializer, (), "killed by SIGKILL"),
    ],
)
def test_workers_dying_before_ready_break_the_pool_after_a_few(
    start_method: str, initializer: Any, args: tuple[Any, ...], words: str
) -> None:
    with Pool(
        processes=1, start_method=start_method, initializer=initializer, initargs=args
    ) as pool:
        started_workers = record_started_workers(pool)
        future = ft.square(2)
        with pytest.raises(InitializerError) as info:
            future.result(timeout=30)
        assert words in str(info.value)
        assert (
            f"{MAX_STARTUP_DEATHS} worker processes in a row died in the pool's initializer"
            in str(info.value)
        )
        assert "Check the initializer" in str(info.value)
        assert len(started_workers) == MAX_STARTUP_DEATHS
        assert wait_until(lambda: not _children(), 10)
        assert not wait_until(lambda: len(started_workers) > MAX_STARTUP_DEATHS, 0.5)


def test_workers_killed_from_outside_while_starting_do_not_break_the_pool() -> None:
    # kill -9 (or the OOM killer) striking workers whose interpreter is still
    # starting says nothing about the initializer: the pool must not give up.
    # A spawned interpreter takes a while to start: each new worker is stopped
    # as soon as it exists, then killed, MAX_STARTUP_DEATHS + 1 times in a row.
    with Pool(processes=1, start_method="spawn") as pool:
        future = ft.square(11)
        dispatcher = _dispatcher(pool)
        killed = 0
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while killed <= MAX_STARTUP_DEATHS:
            assert dispatcher.broken is None, dispatcher.broken
            assert time.monotonic() < deadline, "no new worker appeared"
            fresh = [w for w in dispatcher._workers.handles() if w.pid not in seen]
            if not fresh:
                time.sleep(0.001)
                continue
            handle = fresh[0]
            pid = handle.pid
            seen.add(pid)
            os.kill(pid, signal.SIGSTOP)
            if handle.booted:  # too late for this one
                os.kill(pid, signal.SIGCONT)
                continue
            os.kill(pid, signal.SIGKILL)
            killed += 1
        assert future.result(timeout=30) == 121
        assert dispatcher.broken is None


def test_an_initializer_that_cannot_be_pickled_fails_at_pool_creation() -> None:
    lock = threading.Lock()
    with pytest.raises(TaskPicklingError) as info:
        Pool(processes=1, initializer=lambda: lock.acquire())
    assert info.value.direction == "initializer"
    with pytest.raises(TaskPicklingError, match="initializer"):
        Pool(processes=1, initializer=ft.failing_initializer, initargs=(lock,))


# ------------------------------------------------------ max_tasks_per_child


@pytest.mark.parametrize("tasks_per_process", [1, 2])
def test_max_tasks_per_child_replaces_each_worker_after_n_tasks(
    start_method: str, tasks_per_process: int
) -> None:
    with Pool(
        processes=2,
        start_method=start_method,
        max_tasks_per_child=3,
        tasks_per_process=tasks_per_process,
    ) as pool:
        started_workers = record_started_workers(pool)
        pids = [f.result(timeout=30) for f in [ft.getpid(i) for i in range(12)]]
        counts = Counter(pids)
        assert max(counts.values()) <= 3
        assert len(counts) >= 4
        assert set(counts) <= set(started_workers)
    assert all(_gone(pid) for pid in counts)


def test_max_tasks_per_child_counts_a_map_chunk_as_one_task() -> None:
    with Pool(processes=2, max_tasks_per_child=2) as pool:
        started_workers = record_started_workers(pool)
        pids = list(ft.getpid.map(range(30), chunksize=5))
        counts = Counter(pids)
        # six chunks, two per worker at most: at most ten items per pid
        assert max(counts.values()) <= 10
        assert all(count % 5 == 0 for count in counts.values())
        assert len(counts) >= 3
        assert set(counts) <= set(started_workers)


@pytest.mark.timeout(60)
def test_a_grandchild_holding_a_dead_workers_pipe_does_not_freeze_the_pool() -> None:
    # Under forkserver a killed worker's sentinel fires at once, while a
    # process its task forked still holds the worker's end of the pipe: the
    # dispatcher must not block reading it. (Under fork and spawn the sentinel
    # itself is held by the grandchild, as for ProcessPoolExecutor.)
    with Pool(processes=1, start_method="forkserver") as pool:
        assert pool.submit(operator.add, 1, 1).result(timeout=30) == 2
        with pytest.raises(TaskTimeoutError):
            ft.fork_then_hang(20.0).result(timeout=30)
        started = time.monotonic()
        assert pool.submit(operator.add, 2, 3).result(timeout=30) == 5
        assert time.monotonic() - started < 10  # not the grandchild's 20 s
