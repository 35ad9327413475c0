"""The dispatcher's task table: every task from the inbox until its future
is resolved, the queue of tasks waiting for a worker, and how fast each task
name runs its items.

Every outcome reaches a future here, and only here: a value or an exception
read from a ``Result``, an error (a timeout, a death, the pool breaking), a
cancellation. A map's chunk resolves once, with every item's outcome: its
``Chunk`` record keeps those, and says which items run again when the worker
running it died (the rest of the chunk, first in the queue) or when its pickle
did not load in the worker (each item on its own, linked to its chunk by
``Task.item_of``). With ``retries=``, a call that lost its worker (or ran past
its timeout) goes back in the queue while it has tries left, and a chunk's
running item runs again on its own, the same way.

What it owns: the table, the pending queue, the per-name item speeds. It
never touches a process or a pipe; which worker gets a task, and when a task
has run too long, are the dispatcher's and ``_timeouts``' decisions.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

from ._futures import cancel_notified, start_unless_cancelled
from ._protocol import Result
from ._records import Outcome, Task, TaskState, WorkerHandle, new_task_id
from ._serialize import dumps, loads, pickling_error
from ._wording import after_tries, not_started

__all__ = ["TaskTable"]


class TaskTable:
    """The tasks one dispatcher holds, by id, and those waiting for a worker."""

    def __init__(self) -> None:
        self._tasks: dict[int, Task] = {}
        #: tasks waiting for a worker, in order (work that lost its worker
        #: goes first)
        self.pending: deque[Task] = deque()
        #: seconds per item, by task name (moving average), for auto chunksize
        self.item_seconds: dict[str, float] = {}

    def __bool__(self) -> bool:
        """True while any task is unresolved."""
        return bool(self._tasks)

    def get(self, task_id: int) -> Task | None:
        """The task of that id, unless it ended (a late message names it)."""
        task = self._tasks.get(task_id)
        return None if task is None or task.state is TaskState.DONE else task

    def add(self, task: Task) -> None:
        """A new task, last in the queue."""
        self._tasks[task.id] = task
        self.pending.append(task)

    def next_to_send(self) -> Task | None:
        """The first pending task whose future can still run (now RUNNING, so
        that it can no longer be cancelled, as in the standard library);
        cancelled ones leave the table on the way."""
        while self.pending:
            task = self.pending.popleft()
            if start_unless_cancelled(task.future):
                return task
            self._end(task)
        return None

    def start(self, task_id: int, runner: int) -> Task | None:
        """A worker's runner acknowledged the task: RUNNING. None if it is not
        one that waits for its start."""
        task = self._tasks.get(task_id)
        if task is None or task.state is not TaskState.SENT:
            return None
        task.move(TaskState.RUNNING)
        task.runner = runner
        return task

    # ------------------------------------------------------------ outcomes

    def take_result(self, task: Task, result: Result) -> None:
        """Record a ``Result`` of ``task``; its last one resolves the task."""
        data, plain = _unpickle_outcomes(task.name, result)
        if result.size:
            self._record_speed(task.name, result.busy / result.size)
        chunk = task.chunk
        if chunk is None:
            ok, value = (True, data[0]) if plain else data[0]
            self._deliver(task, ok, value)
            return
        value = chunk.take_flush(result.first, data, plain, result.final)
        if result.final:
            if value is chunk.outcomes and not chunk.complete():
                self._wait_for_items(task)  # an item is being retried on its own
                return
            self._end(task)
            _resolve(task.future, True, value)

    def fail(self, task: Task, error: BaseException) -> None:
        """End a task with ``error``: a call's future raises it; each item of a
        chunk that has no outcome yet gets it, the finished ones keep theirs."""
        if task.item_of is not None:
            self._deliver(task, False, error)
            return
        self._end(task)
        future = task.future
        if future.done() or not start_unless_cancelled(future):
            return
        if task.chunk is not None:
            _resolve(future, True, task.chunk.fail_unfinished(error))
        else:
            _resolve(future, False, error)

    def lose(self, task: Task, error: BaseException, mark: int, rerun: bool) -> None:
        """``task``'s worker died or was stopped for its timeout; ``mark`` is
        its runner's mark (the item of a chunk it was running). Unless
        ``rerun`` is False (the pool is being terminated), what had not
        started runs again, first in the queue: a task never acknowledged, the
        items of a chunk after the running one. What was running fails with
        ``error``, unless it has a try left (``retries=``): then it runs again,
        a chunk's item on its own, on another worker (this one is gone). A
        chunk whose mark names a batch of items (``Call.exact`` False) runs
        them again one mark per item, counting no try, to learn which one."""
        task.leave_worker()
        if not rerun:
            self.fail(task, error)
            return
        if task.state is TaskState.SENT:
            self._requeue(task)
            return
        chunk = task.chunk
        if chunk is None:
            task.tries += 1
            if task.tries <= task.retries:
                self._requeue(task)
                return
            self.fail(task, after_tries(error, task.tries, task.retries))
            return
        running = chunk.running_items(mark)
        if len(running) > 1:
            # It died in a batch of quick items marked together: which one
            # killed it is unknown. They all run again, marked one by one; the
            # one that kills its worker again counts this death's try too.
            chunk.owed.update(running)
            task.exact_marks = True
            self._rerun_rest(task, chunk.unfinished(), waits=False)
            return
        retry = running[0] if running else None
        owed = chunk.take_owed(retry)
        if retry is not None:
            tries = chunk.count_try(retry)
            if owed and tries <= task.retries:
                tries = chunk.count_try(retry)
            if tries > task.retries:
                chunk.outcomes[retry] = (False, after_tries(error, tries, task.retries))
                retry = None
            elif not self._send_item(task, retry, tries):
                retry = None
        self._rerun_rest(task, chunk.unfinished(apart=retry), waits=retry is not None)

    def _rerun_rest(self, task: Task, rest: list[int], *, waits: bool) -> None:
        """Chunk ``task``'s items ``rest`` run again, first in the queue; with
        none left, it resolves, or ``waits`` for its items running on their own."""
        chunk = task.chunk
        assert chunk is not None
        if not rest:
            if waits:
                self._wait_for_items(task)
            else:
                self._end(task)
                _resolve(task.future, True, chunk.outcomes)
            return
        try:
            task.payload = chunk.rerun(rest)
        except BaseException as exc:  # user code, whatever it raises
            self.fail(task, pickling_error(task.name, "argument", exc))
            return
        self._requeue(task)

    def _send_item(self, task: Task, index: int, tries: int) -> bool:
        """Item ``index`` of chunk ``task`` runs again on its own, first in
        the queue, its outcome going into the chunk; False if it fails now."""
        assert task.chunk is not None
        try:
            payload = dumps([task.chunk.item_call(index)])
        except BaseException as exc:  # user code, whatever it raises
            task.chunk.outcomes[index] = (False, pickling_error(task.name, "argument", exc))
            return False
        item = _item_task(task, index, payload)
        item.retries, item.tries = task.retries, tries
        self._tasks[item.id] = item
        self.pending.appendleft(item)
        return True

    def _wait_for_items(self, task: Task) -> None:
        """A chunk with nothing left to run itself waits in the table, held by
        no worker, for its items running on their own (the last resolves it)."""
        task.leave_worker()
        if task.state is TaskState.SENT:  # no Ack asked for (no timeout)
            task.move(TaskState.RUNNING)

    def take_args_failure(self, task: Task, error: BaseException) -> None:
        """The function or the arguments of ``task`` did not unpickle in the
        worker: it fails, or a chunk of several items is sent item by item."""
        chunk = task.chunk
        if chunk is None or len(chunk.indices) < 2:
            self.fail(task, error)
            return
        # One bad item spoils the chunk's pickle: send each item on its own to
        # find it, so the others still run. The chunk waits in the table, held
        # by no worker, until every item has its outcome.
        task.leave_worker()
        complete = False
        for index, call in chunk.item_calls():
            try:
                payload = dumps([call])
            except BaseException as exc:  # user code, whatever it raises
                complete = chunk.record(index, (False, pickling_error(task.name, "argument", exc)))
                continue
            self.add(_item_task(task, index, payload))
        if complete:
            self._end(task)
            _resolve(task.future, True, chunk.outcomes)

    def stop(self, future: Future[Any]) -> list[tuple[Task, WorkerHandle | None]]:
        """Its user stopped ``future`` (cancelled already, ``_stop``): every
        task resolving it (a call; a chunk and its items sent on their own)
        ends now, and is returned with the worker that held it, to be
        stopped. A result it still sends is dropped; it never runs again."""
        stopped = [(task, task.worker) for task in self._tasks.values() if task.future is future]
        for task, _worker in stopped:
            self._end(task)
        return stopped

    def rerun(self, task: Task) -> None:
        """``task``'s worker was killed because its user stopped another task
        in it: what ``task`` had not finished runs again, from the start, first
        in the queue, counting no try (its own work was not at fault)."""
        task.leave_worker()
        chunk = task.chunk
        if chunk is None or task.state is TaskState.SENT:
            self._requeue(task)
            return
        # An item may be running on its own (a retry): then the chunk waits.
        self._rerun_rest(task, chunk.unfinished(), waits=not chunk.complete())

    def cancel_pending(self) -> None:
        """Cancel every task that has not been sent (an item of a chunk sent
        on its own gets ``CancelledError`` as its outcome)."""
        while self.pending:
            task = self.pending.popleft()
            if task.item_of is not None:
                self._deliver(task, False, CancelledError())
            elif cancel_notified(task.future):
                self._end(task)
            else:  # pragma: no cover - pending futures are always cancellable
                self.fail(task, not_started())

    def fail_all(self, error: BaseException) -> None:
        """Fail every task (the pool broke, or the dispatcher failed)."""
        for task in list(self._tasks.values()):
            self.fail(task, error)
        self.pending.clear()

    # ------------------------------------------------------------ helpers

    def _end(self, task: Task) -> None:
        """It leaves its worker and the table, DONE (its future is resolved
        next, or was cancelled)."""
        task.leave_worker()
        if task.state is not TaskState.DONE:
            task.move(TaskState.DONE)
        self._tasks.pop(task.id, None)

    def _requeue(self, task: Task) -> None:
        task.move(TaskState.PENDING)
        self.pending.appendleft(task)

    def _deliver(self, task: Task, ok: bool, value: Any) -> None:
        """A single call's outcome: into its future, or, for an item of a
        chunk sent on its own, into the chunk (which resolves with its last)."""
        self._end(task)
        if task.item_of is None:
            _resolve(task.future, ok, value)
            return
        parent, index = task.item_of
        if parent.state is TaskState.DONE:
            return  # the chunk failed as a whole meanwhile
        assert parent.chunk is not None
        if parent.chunk.record(index, (ok, value)):
            self._end(parent)
            _resolve(parent.future, True, parent.chunk.outcomes)

    def _record_speed(self, name: str, seconds: float) -> None:
        previous = self.item_seconds.get(name)
        self.item_seconds[name] = seconds if previous is None else 0.7 * previous + 0.3 * seconds


def _resolve(future: Future[Any], ok: bool, value: Any) -> None:
    """Put an outcome in ``future``, unless its user stopped it meanwhile: a
    running future is cancelled by ``nestpool.stop`` in the user's thread
    (so that waiters see it at once), which may come just before the
    dispatcher resolves it. The outcome is then dropped, as the user asked."""
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except InvalidStateError:
        if not future.cancelled():  # pragma: no cover - a bug in nestpool
            raise


def _unpickle_outcomes(name: str, result: Result) -> tuple[list[Any], bool]:
    """The outcomes a ``Result`` carries, and whether they are bare values."""
    blob, plain = result.outcomes, result.plain
    if isinstance(blob, bytes):
        try:
            return loads(blob), plain
        except BaseException as exc:  # whatever user code raised, SystemExit too
            error = pickling_error(name, "result (unpickling in the parent)", exc)
            return [(False, error)] * result.size, False
    # One pickle per item (values of types the parent might fail to rebuild):
    # a bad one fails alone.
    data: list[Any] = [_load_outcome(name, item, plain) for item in blob]
    if plain:
        if all(ok for ok, _ in data):
            return [value for _, value in data], True
        return data, False
    return data, plain


def _load_outcome(name: str, data: bytes, plain: bool) -> Outcome:
    """One item's outcome from its own pickle (of its bare value if ``plain``)."""
    try:
        loaded = loads(data)
    except BaseException as exc:  # whatever user code raised, SystemExit too
        return False, pickling_error(name, "result (unpickling in the parent)", exc)
    if plain:
        return True, loaded
    outcome: Outcome = loaded
    return outcome


def _item_task(chunk_task: Task, index: int, payload: bytes) -> Task:
    """Item ``index`` of the chunk ``chunk_task`` as a task of its own (its
    pickled call: ``payload``), whose outcome goes into the chunk."""
    return Task(
        new_task_id(),
        chunk_task.name,
        chunk_task.fn_payload,
        payload,
        chunk_task.future,
        chunk_task.timeout,
        None,
        item_of=(chunk_task, index),
    )
