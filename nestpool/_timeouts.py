"""Task timeouts, all of them: when a task's time starts, how long the
dispatcher may wait, and what happens to a task that runs too long.

A task's ``timeout=`` counts from its ``Ack`` (the worker started it), so time
spent waiting for a worker never counts. Its deadline goes on a heap; the
dispatcher's wait ends at the nearest one, never by polling. A task still
running at its deadline fails with ``TaskTimeoutError`` and its worker is
stopped (killed, then replaced like any dead worker): Python cannot interrupt a
call in another process, and a stuck call may hold the GIL. The other tasks of
that worker then fail with a ``WorkerDiedError`` that says why it was stopped,
and nothing more is sent to it meanwhile (``WorkerTable.open_workers``).

What it owns: the deadline heap and the decision that a task is late. It never
resolves a future or kills a process itself: it returns ``Expiry`` decisions,
which the dispatcher carries out.
"""

from __future__ import annotations

import heapq
import logging
import time
from typing import TYPE_CHECKING, NamedTuple

from ._errors import TaskTimeoutError
from ._records import Task, TaskState, WorkerHandle
from ._wording import timeout_error, timeout_stop_reason

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._tasks import TaskTable

__all__ = ["MAX_WAIT", "Deadlines", "Expiry"]

logger = logging.getLogger("nestpool")

#: The longest single wait of the dispatcher, in seconds: it wakes up at least
#: this often, so a far deadline never overflows a wait.
MAX_WAIT = 3600.0


class Expiry(NamedTuple):
    """A task ran past its timeout: fail it with ``error``, stop ``worker``
    (telling its other tasks ``reason``)."""

    task: Task
    worker: WorkerHandle
    error: TaskTimeoutError
    reason: str


class Deadlines:
    """The deadlines of the running tasks that have a timeout, nearest first."""

    def __init__(self, tasks: TaskTable) -> None:
        self._tasks = tasks
        #: (deadline, task id): finished tasks leave theirs behind, dropped
        #: when they reach the top
        self._heap: list[tuple[float, int]] = []

    def start(self, task: Task) -> None:
        """``task`` was acknowledged: its time, if it has a limit, starts now."""
        if task.timeout is not None:
            task.deadline = time.monotonic() + task.timeout
            heapq.heappush(self._heap, (task.deadline, task.id))

    def wait_seconds(self) -> float | None:
        """How long the dispatcher may wait before the nearest deadline (None:
        no deadline)."""
        heap = self._heap
        # Drop finished tasks' deadlines on top, so a long timeout (or an
        # infinite one) does not keep the wait short for them.
        while heap and self._live(*heap[0]) is None:
            heapq.heappop(heap)
        if not heap:
            return None
        # Capped: poll() and lock waits overflow on huge timeouts (even inf).
        return min(MAX_WAIT, max(0.0, heap[0][0] - time.monotonic()))

    def expired(self) -> Iterator[Expiry]:
        """The running tasks whose deadline has passed, each once."""
        now = time.monotonic()
        heap = self._heap
        while heap and heap[0][0] <= now:
            task = self._live(*heapq.heappop(heap))
            worker = None if task is None else task.worker
            if task is None or worker is None:
                continue
            logger.warning(
                "task %r (id %d) ran past its timeout of %ss; stopping worker pid %d",
                task.name,
                task.id,
                task.timeout,
                worker.pid,
            )
            yield Expiry(task, worker, timeout_error(task, worker.pid), timeout_stop_reason(task))

    def _live(self, deadline: float, task_id: int) -> Task | None:
        """The task, if it runs under this deadline (not finished, and not a
        chunk re-run since under a newer one)."""
        task = self._tasks.get(task_id)
        if task is None or task.state is not TaskState.RUNNING or task.deadline != deadline:
            return None
        return task
