"""Tasks for tests/test_per_worker.py: resources made once per worker."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from nestpool import per_worker, process_task, thread_subtask

#: where the resources below record what happens to them (set by
#: ``log_to``: the pool's initializer, or the test itself in the parent)
_log_path: list[str] = []


def log_to(path: str, errors: str | None = None) -> None:
    """Initializer: record to ``path``; the worker's 'nestpool' log records
    go to ``errors``."""
    _log_path[:] = [path]
    if errors is not None:
        import logging

        handler = logging.FileHandler(errors)
        handler.setFormatter(logging.Formatter("%(process)d %(levelname)s %(message)s"))
        logging.getLogger("nestpool").addHandler(handler)


def _log(line: str) -> None:
    with Path(_log_path[0]).open("a") as handle:
        handle.write(line + "\n")


class Session:
    """A resource with close(), as an HTTP session or a connection."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        _log(f"made {self.pid}")

    def close(self) -> None:
        _log(f"closed {self.pid}")


class Held:
    """A context manager without close()."""

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc_info: object) -> None:
        _log(f"exited {os.getpid()}")


class Broken:
    """A resource whose close() fails."""

    def close(self) -> None:
        raise RuntimeError("cannot close Broken")


@per_worker
def session() -> Session:
    return Session()


@per_worker
def held() -> Held:
    return Held()


@per_worker
def broken() -> Broken:
    return Broken()


@per_worker(scope="thread")
def per_thread() -> object:
    return object()


@process_task
def use_session(_: int) -> tuple[int, int]:
    """This worker's pid and the id of its session."""
    return os.getpid(), id(session())


@process_task
def use_all(_: int) -> int:
    session()
    held()
    broken()
    return os.getpid()


@thread_subtask
def thread_instance(barrier: Any) -> tuple[int, int]:
    barrier.wait(timeout=10)
    return threading.get_ident(), id(per_thread())


@process_task
def per_thread_ids() -> tuple[bool, bool]:
    """In a worker: two subtasks on two threads get two instances; one thread
    gets the same one twice."""
    barrier = threading.Barrier(2)
    first, second = (thread_instance(barrier) for _ in range(2))
    (ident_a, id_a), (ident_b, id_b) = first.result(timeout=10), second.result(timeout=10)
    again = id(per_thread()) == id(per_thread())
    return ident_a != ident_b and id_a != id_b, again
