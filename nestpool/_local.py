"""The local process engine as a backend: ``Pool(processes=N)`` with N >= 1.

What it owns: the pool's dispatcher (and so its worker processes) from the
first process task to the pool's shutdown: starting it on first use, never
after shutdown has taken its last look at it, and stopping it. It packs work
as the dispatcher's ``Task`` records; the shared half of ``submit`` and
``map`` (pickling errors, chunk sizing, unpicklable items) is
``_backend.WorkerBackend``'s.

It must never touch the task or worker tables (the dispatcher thread's alone)
nor the pool's options and routing (``Pool``'s).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from ._backend import Work, WorkerBackend
from ._dispatcher import Dispatcher, new_task_id
from ._errors import PoolClosedError
from ._options import PoolOptions
from ._reach import Reach
from ._records import Task
from ._serialize import FunctionPayload, dumps
from ._stop import TaskFuture

__all__ = ["SHUTDOWN_MESSAGE", "LocalBackend"]

#: The standard library's words (concurrent.futures.process).
SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"


class LocalBackend(WorkerBackend):
    """Runs process tasks on the pool's own worker processes.

    A chunk's items share one deadline on this engine (the dispatcher times a
    ``Task``, not its items).
    """

    chunk_shares_deadline = True

    def __init__(self, options: PoolOptions, *, name: str, cores: int) -> None:
        self._options = options
        self._name = name
        self._cores = cores
        #: how far the callables sent to the workers must reach
        self.reach: Reach = "forked" if options.start_method == "fork" else "spawned"
        # re-entrant: Pool.__del__ may shut this down in a thread that holds it
        self._lock = threading.RLock()
        self.dispatcher: Dispatcher | None = None
        #: set when shutdown has taken its last look at the dispatcher: none may
        #: be started after it, since nobody would stop it
        self._dispatcher_final = False

    def get_dispatcher(self) -> Dispatcher:
        """The dispatcher, started on the first process task.

        Raises:
            PoolClosedError: the pool was shut down before any process task
                (a call that read the route just before ``shutdown``); no
                worker is started once ``shutdown`` has looked for the
                dispatcher to stop, since nobody would stop it. (Until then a
                subtask still running here may make the first call.)
        """
        dispatcher = self.dispatcher
        if dispatcher is None:
            with self._lock:
                dispatcher = self.dispatcher
                if dispatcher is None and self._dispatcher_final:
                    raise PoolClosedError(SHUTDOWN_MESSAGE)
                if dispatcher is None:
                    options = self._options
                    dispatcher = self.dispatcher = Dispatcher(
                        options, name=self._name, cores=self._cores
                    )
        return dispatcher

    # ------------------------------------------------------------ WorkerBackend

    def slots(self) -> int:
        return self._options.processes * self._options.tasks_per_process

    def item_seconds(self, name: str) -> float | None:
        dispatcher = self.dispatcher
        return None if dispatcher is None else dispatcher.item_seconds.get(name)

    def ready(self) -> None:
        self.get_dispatcher()

    def pack_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return dumps([(args, kwargs)])

    def pack_items(self, items: Sequence[Any], unary: bool) -> bytes:
        # A chunk travels as its positional-argument tuples (with ``unary``,
        # the single arguments): no kwargs dict per item (a map has none),
        # which halves the pickling per item.
        return dumps(items)

    def send(
        self,
        work: Work,
        payload: FunctionPayload,
        packed: Any,
        items: Sequence[Any] | None,
        unary: bool,
        future: Future[Any],
    ) -> None:
        task = Task(new_task_id(), work.name, payload, packed, future, work.timeout, items, unary)
        task.retries = work.retries
        try:
            dispatcher = self.get_dispatcher()
        except PoolClosedError as exc:
            future.set_running_or_notify_cancel()
            future.set_exception(exc)
            return
        if isinstance(future, TaskFuture):
            future._stopper = weakref.WeakMethod(dispatcher.stop)
        dispatcher.submit(task)

    def new_future(self, work: Work) -> Future[Any]:
        return TaskFuture(work.stop_on_cancel)

    # ------------------------------------------------------------ Backend

    def processes(self) -> int:
        return self._options.processes

    def worker_pids(self) -> list[int]:
        dispatcher = self.dispatcher
        return [] if dispatcher is None else dispatcher.worker_pids()

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        with self._lock:
            dispatcher = self.dispatcher
            self._dispatcher_final = True
        if dispatcher is not None:
            dispatcher.shutdown(cancel_futures=cancel_futures)
            if wait:
                dispatcher.join()

    def terminate(self) -> None:
        with self._lock:
            dispatcher = self.dispatcher
            self._dispatcher_final = True
        if dispatcher is not None:
            dispatcher.terminate()
            dispatcher.join(10)

    def describe(self) -> str:
        return self._options.describe()
