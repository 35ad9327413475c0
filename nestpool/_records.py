"""The dispatcher's records: a task sent to workers, a worker process, and
the states each moves through.

What it owns: the fields and the allowed state transitions; nothing here
touches a process, a pipe or a lock (the dispatcher thread alone mutates
these records).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ._serialize import FunctionPayload

__all__ = ["ALLOWED_TRANSITIONS", "Outcome", "Task", "TaskState", "WorkerHandle", "WorkerState"]

Outcome = tuple[bool, Any]


class TaskState(enum.Enum):
    """Where a task is in its life; changed only through ``Task.move``."""

    PENDING = "pending"  # waiting in the dispatcher for a worker slot
    SENT = "sent"  # written to a worker's channel, not yet acknowledged
    RUNNING = "running"  # acknowledged: the worker started it
    DONE = "done"  # its future is resolved (value, error or cancelled)


ALLOWED_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.SENT, TaskState.DONE}),
    # SENT -> PENDING: the worker died (or was retired) before starting it.
    TaskState.SENT: frozenset({TaskState.RUNNING, TaskState.PENDING, TaskState.DONE}),
    # RUNNING -> PENDING: a chunk whose worker died runs its unstarted items again.
    TaskState.RUNNING: frozenset({TaskState.DONE, TaskState.PENDING}),
    TaskState.DONE: frozenset(),
}


class Task:
    """One unit sent to a worker: a single call, or a chunk of items of a map."""

    __slots__ = (
        "deadline",
        "fn_payload",
        "future",
        "id",
        "indices",
        "items",
        "name",
        "outcomes",
        "payload",
        "runner",
        "state",
        "timeout",
        "unary",
        "values",
        "worker",
    )

    def __init__(
        self,
        task_id: int,
        name: str,
        fn_payload: FunctionPayload,
        payload: bytes,
        future: Future[Any],
        timeout: float | None,
        items: Sequence[Any] | None,
        unary: bool = False,
    ) -> None:
        self.id = task_id
        self.name = name
        self.fn_payload = fn_payload
        self.payload = payload
        self.future = future
        self.timeout = timeout
        #: chunk only: the original items (positional-argument tuples, or with
        #: ``unary`` the single arguments themselves), kept to re-send the
        #: unfinished ones.
        self.items = items
        self.unary = unary
        self.outcomes: list[Outcome | None] | None = (
            None if items is None else cast("list[Outcome | None]", [None] * len(items))
        )
        #: chunk only: original positions of the items in ``payload`` (a range
        #: until a re-run sends a subset: no list of ints per chunk on the hot path).
        self.indices: Sequence[int] | None = None if items is None else range(len(items))
        #: chunk only: the leading items' bare values, while every flush so far
        #: came plain and in order (no outcome tuple per item on the hot path);
        #: ``materialize()`` moves them into ``outcomes`` before anything else
        #: reads those.
        self.values: list[Any] | None = None if items is None else []
        self.state = TaskState.PENDING
        self.worker: WorkerHandle | None = None
        self.deadline: float | None = None
        #: the index of the worker's runner that acknowledged it
        self.runner = 0

    def materialize(self) -> None:
        """Move the bare values received so far into ``outcomes``."""
        values = self.values
        if values and self.outcomes is not None:
            self.outcomes[: len(values)] = [(True, value) for value in values]
        self.values = None

    def move(self, new: TaskState) -> None:
        """Change state, refusing any transition the table does not allow."""
        if new not in ALLOWED_TRANSITIONS[self.state]:
            raise AssertionError(f"task {self.id}: {self.state.name} -> {new.name} not allowed")
        self.state = new


class WorkerState(enum.Enum):
    """The life of a worker process as the dispatcher sees it."""

    STARTING = "starting"
    READY = "ready"
    RETIRING = "retiring"  # sent EXIT (max_tasks_per_child or shutdown)
    DEAD = "dead"


class WorkerHandle:
    """The dispatcher's record of one worker process."""

    __slots__ = (
        "booted",
        "conn",
        "functions",
        "index",
        "kill_reason",
        "marks",
        "pid",
        "process",
        "sent_count",
        "state",
        "tasks",
    )

    def __init__(self, index: int, process: Any, conn: Any, marks: Any) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        #: shared array: per runner, the index of the item it runs; then 1
        #: while the worker holds a compute slot
        self.marks = marks
        self.state = WorkerState.STARTING
        self.tasks: dict[int, Task] = {}  # sent or running here
        self.sent_count = 0
        self.kill_reason: str | None = None
        #: the worker said ``Booted``: its own code (and so the initializer) ran
        self.booted = False
        #: keys of the callables this worker has, least recently sent first
        self.functions: OrderedDict[bytes, None] = OrderedDict()

        self.pid: int = process.pid or 0
