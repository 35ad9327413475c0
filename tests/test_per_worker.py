"""``@per_worker``: one instance per process (or thread), closed at worker exit."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import pytest

from nestpool import PerWorker, Pool, _serialize, per_worker
from tests import per_worker_tasks as pt

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    path.touch()
    pt.log_to(str(path))  # for instances made here, in the parent
    return path


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_one_instance_per_worker_reused_by_its_tasks_and_closed_at_exit(
    start_method: str, log: Path
) -> None:
    with Pool(
        processes=2, start_method=start_method, initializer=pt.log_to, initargs=(str(log),)
    ) as pool:
        seen = list(pt.use_session.map(range(40), chunksize=1))
        pids = set(pool.worker_pids())
    by_pid: dict[int, set[int]] = {}
    for pid, ident in seen:
        by_pid.setdefault(pid, set()).add(ident)
    assert set(by_pid) <= pids
    assert all(len(ids) == 1 for ids in by_pid.values())  # reused within a worker
    made = Counter(line for line in _lines(log) if line.startswith("made"))
    assert made == Counter(f"made {pid}" for pid in by_pid)  # one per worker, never shared
    closed = sorted(line for line in _lines(log) if line.startswith("closed"))
    assert closed == sorted(f"closed {pid}" for pid in by_pid)  # each closed at exit
    assert os.getpid() not in by_pid


def test_a_context_manager_is_exited_and_a_failing_close_is_logged(
    start_method: str, log: Path, tmp_path: Path
) -> None:
    errors = tmp_path / "errors"
    with Pool(
        processes=1,
        start_method=start_method,
        initializer=pt.log_to,
        initargs=(str(log), str(errors)),
    ):
        pid = pt.use_all(0).result(timeout=30)
    assert f"exited {pid}" in _lines(log)
    text = errors.read_text()
    assert f"{pid} ERROR" in text
    assert "closing the per_worker instance of broken failed" in text
    assert "RuntimeError: cannot close Broken" in text


def test_thread_scope_gives_each_thread_its_own(start_method: str) -> None:
    with Pool(processes=1, threads=4, start_method=start_method):
        distinct, same_again = pt.per_thread_ids().result(timeout=30)
    assert distinct and same_again


def test_in_the_parent_one_instance_until_a_fork(log: Path) -> None:
    first = pt.session()
    assert pt.session() is first
    assert _lines(log).count(f"made {os.getpid()}") == 1
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.close(read)
        ok = pt.session() is not first and pt.session().pid == os.getpid()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(child, 0)


def test_it_is_typed_and_pickles_by_reference() -> None:
    assert isinstance(pt.session, PerWorker)
    assert pt.session.__name__ == "session"
    assert pt.session.scope == "process"
    assert pickle.loads(pickle.dumps(pt.session)) is pt.session

    def local() -> int:
        return 7

    made = per_worker(local)
    copy = pickle.loads(_serialize.dumps_by_value(made))  # as a closure's global travels
    assert isinstance(copy, PerWorker)
    assert copy is not made
    assert copy() == 7
    with pytest.raises(ValueError, match="scope"):
        per_worker(scope="module")(local)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        per_worker(42)  # type: ignore[arg-type]
