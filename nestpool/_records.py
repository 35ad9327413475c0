"""The dispatcher's records: a task sent to workers, the items of a map's
chunk, a worker process, and the states each moves through.

What it owns: the fields, the allowed state transitions, the link between a
task and the worker it was sent to, and what a chunk knows of its items. It
never touches a process, a pipe, a lock or a task's future (the dispatcher
thread alone mutates these records; ``_tasks`` resolves the futures).
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

from ._protocol import marked_span
from ._serialize import ChunkValues, dumps

if TYPE_CHECKING:
    from ._serialize import FunctionPayload

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Chunk",
    "Outcome",
    "Task",
    "TaskState",
    "WorkerHandle",
    "WorkerState",
    "new_task_id",
]

Outcome = tuple[bool, Any]

_task_ids = itertools.count(1)


def new_task_id() -> int:
    """A process-wide unique task id (``next`` on a count is atomic)."""
    return next(_task_ids)


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
        "chunk",
        "deadline",
        "exact_marks",
        "fn_payload",
        "future",
        "id",
        "item_of",
        "name",
        "payload",
        "retries",
        "runner",
        "state",
        "timeout",
        "tries",
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
        *,
        item_of: tuple[Task, int] | None = None,
    ) -> None:
        self.id = task_id
        self.name = name
        self.fn_payload = fn_payload
        #: the pickled arguments: one call's, or the items of ``chunk.indices``
        self.payload = payload
        #: the future it resolves; an item of a chunk sent on its own shares
        #: its chunk's (its outcome goes into the chunk, never into it)
        self.future = future
        self.timeout = timeout
        #: a map's chunk: its items and their outcomes (None: a single call)
        self.chunk = None if items is None else Chunk(items, unary)
        #: a single call made of item ``index`` of chunk ``task`` (its chunk
        #: did not unpickle in the worker, so each item is sent on its own)
        self.item_of = item_of
        self.state = TaskState.PENDING
        self.worker: WorkerHandle | None = None
        self.deadline: float | None = None
        #: the index of the worker's runner that acknowledged it
        self.runner = 0
        #: how many more tries a call (or each item of a chunk) gets when its
        #: worker dies or it runs past its timeout (``retries=``)
        self.retries = 0
        #: tries of this call that ended so (a chunk counts per item)
        self.tries = 0
        #: a chunk whose runner marks each item as it starts (``Call.exact``)
        self.exact_marks = False

    def move(self, new: TaskState) -> None:
        """Change state, refusing any transition the table does not allow."""
        if new not in ALLOWED_TRANSITIONS[self.state]:
            raise AssertionError(f"task {self.id}: {self.state.name} -> {new.name} not allowed")
        self.state = new

    def assign(self, worker: WorkerHandle) -> None:
        """It is being sent to ``worker``: SENT, and held by that worker."""
        self.move(TaskState.SENT)
        self.worker = worker
        worker.tasks[self.id] = self

    def leave_worker(self) -> None:
        """It ended or goes back to the queue: its worker no longer holds it."""
        worker = self.worker
        if worker is not None:
            self.worker = None
            worker.tasks.pop(self.id, None)


class Chunk:
    """The items of one map chunk and what became of each.

    A chunk runs as one task, but its items succeed or fail one by one: a
    worker that dies fails the item it was running, and the items after it run
    again; a chunk whose pickle does not load in the worker is sent item by
    item. This record keeps every item's outcome and says which items are left.
    """

    __slots__ = ("indices", "items", "outcomes", "owed", "tries", "unary", "values")

    def __init__(self, items: Sequence[Any], unary: bool) -> None:
        #: the original items (positional-argument tuples, or with ``unary``
        #: the single arguments themselves), kept to re-send unfinished ones
        self.items = items
        self.unary = unary
        self.outcomes = cast("list[Outcome | None]", [None] * len(items))
        #: original positions of the items in the task's payload (a range
        #: until a re-run sends a subset: no list of ints per chunk on the hot path)
        self.indices: Sequence[int] = range(len(items))
        #: the leading items' bare values, while every flush so far came plain
        #: and in order (no outcome tuple per item on the hot path);
        #: ``_materialize()`` moves them into ``outcomes`` before anything else
        #: reads those
        self.values: list[Any] | None = []
        #: by item index: its tries that ended with its worker's death or a
        #: timeout (only items that got one)
        self.tries: dict[int, int] = {}
        #: the items of a batch that a death interrupted (one mark for the
        #: batch): the try it cost goes to the one that dies again
        self.owed: set[int] = set()

    def _materialize(self) -> None:
        values = self.values
        if values:
            self.outcomes[: len(values)] = [(True, value) for value in values]
        self.values = None

    def take_flush(self, first: int, data: list[Any], plain: bool, final: bool) -> Any:
        """Record one flush of outcomes (bare values if ``plain``) from item
        ``first`` of the payload on; on the ``final`` one, return the chunk's
        result (``ChunkValues`` when every item succeeded, else the outcomes)."""
        indices, values = self.indices, self.values
        if plain and values is not None and first == len(values) and type(indices) is range:
            # Every item so far a value, in order: the values go to the map as
            # they are (no outcome tuple per item).
            if not final:
                values += data
                return None
            if values:
                values += data
                data = values
            # (one flush, the usual case for tiny items: one copy, not two)
            return ChunkValues(data)
        self._materialize()
        outcomes: list[Outcome] = [(True, v) for v in data] if plain else data
        if type(indices) is range:
            # Not re-run: the positions are the offsets (one slice, no loop per item).
            self.outcomes[first : first + len(outcomes)] = outcomes
        else:
            for offset, outcome in enumerate(outcomes):
                self.outcomes[indices[first + offset]] = outcome
        return self.outcomes if final else None

    def record(self, index: int, outcome: Outcome) -> bool:
        """Item ``index``, sent on its own, ended; True once every item has."""
        self._materialize()
        self.outcomes[index] = outcome
        return all(outcome is not None for outcome in self.outcomes)

    def running_items(self, mark: int) -> list[int]:
        """Its worker died (or was stopped) while its runner's mark named an
        item of the payload, or a batch of them (``marked_span``): the
        indices of those items that have no outcome yet."""
        self._materialize()
        indices = self.indices
        start, end = marked_span(mark)
        last = len(indices) - 1
        start = min(max(start, 0), last)
        # The mark still names the items reported last if the worker died
        # between sending their results and marking the next: those keep
        # their values, and the next had not started.
        # (end > start: a batch's end is past its start, clamping only
        # lowers start, and the slice stops at the payload's end)
        return [i for i in indices[start:end] if self.outcomes[i] is None]

    def count_try(self, index: int) -> int:
        """Item ``index`` lost its worker once more: its tries so far."""
        tries = self.tries[index] = self.tries.get(index, 0) + 1
        return tries

    def take_owed(self, index: int | None) -> bool:
        """A death named item ``index`` (None: no item): True if it also owes
        the try of an earlier death in its batch, which named no item. Either
        way the other items of that batch owe nothing more."""
        owed = index in self.owed
        self.owed.clear()
        return owed

    def unfinished(self, apart: int | None = None) -> list[int]:
        """The items of the payload without an outcome (but ``apart``)."""
        self._materialize()
        return [i for i in self.indices if self.outcomes[i] is None and i != apart]

    def complete(self) -> bool:
        """True once every item has its outcome (none runs on its own still)."""
        return all(outcome is not None for outcome in self.outcomes)

    def item_call(self, index: int) -> tuple[Any, dict[str, Any]]:
        """Item ``index`` as a call of its own: ``(args, kwargs)``."""
        item = self.items[index]
        return ((item,) if self.unary else item, {})

    def rerun(self, rest: list[int]) -> bytes:
        """The payload that runs items ``rest`` again; from now on the task's
        payload holds those. Raises what pickling them raises."""
        payload = dumps([self.items[i] for i in rest])
        self.indices = rest
        return payload

    def item_calls(self) -> list[tuple[int, tuple[Any, dict[str, Any]]]]:
        """Each unfinished item as a call of its own: ``(index, (args, kwargs))``."""
        items = self.items
        return [
            (index, ((items[index],) if self.unary else items[index], {})) for index in self.indices
        ]

    def fail_unfinished(self, error: BaseException) -> list[Outcome | None]:
        """Every item without an outcome gets ``error``; returns the outcomes."""
        self._materialize()
        outcomes = self.outcomes
        for index in self.indices:
            if outcomes[index] is None:
                outcomes[index] = (False, error)
        return outcomes


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
        "rerun_held",
        "sent_count",
        "state",
        "tasks",
        "unread",
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
        #: killed because its user stopped one of its tasks (``nestpool.stop``):
        #: the other tasks it held run again elsewhere, counting no try
        self.rerun_held = False
        #: the worker said ``Booted``: its own code (and so the initializer) ran
        self.booted = False
        #: keys of the callables this worker has, least recently sent first
        self.functions: OrderedDict[bytes, None] = OrderedDict()
        #: the start of a message read from its pipe, the rest still to come
        self.unread = bytearray()

        self.pid: int = process.pid or 0
