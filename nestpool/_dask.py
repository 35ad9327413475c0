"""The Dask distributed backend: ``Pool(client=client)``.

What it owns, on both sides of a Dask cluster::

    client process                                  Dask worker process (any host)
    --------------                                  ------------------------------
    Pool(client=...) --submit--> DaskBackend        Dask executor thread
      cf.Future  <--bridge--  dask Future   ====>     run_task(): enter the worker
      (cancel forwarded to Dask)                      route once, run the call as a
                                                      helper thread, return outcome
                                                      bytes; subtasks go to this
                                                      process's persistent pool

- The client side turns each process task into one ``client.submit(run_task,
  ..., pure=False)`` and hands back a ``concurrent.futures.Future`` resolved
  from the Dask future on the client's event loop (as ``distributed``'s own
  ``ClientExecutor`` does), so ``wait``, ``as_completed``, ``gather`` and
  ``asyncio.wrap_future`` work. ``submit`` and ``.map`` are
  ``_backend.WorkerBackend``'s, shared with the local engine: one Dask task
  per call, or per chunk of a map (``chunksize`` items, or, by default, one
  until the workers' reported item time says to batch tiny ones); this module
  only packs and sends.
- The worker side makes each Dask worker process a nestpool worker
  (``_routing.enter_worker``, once per process, shared by every Dask thread
  there): a worker plugin does it when the process starts, ``run_task`` again
  in case the plugin has not run yet. ``run_task`` marks the Dask thread
  running the call as a helper (so it runs the unstarted subtasks it waits on:
  no deadlock, whatever the thread counts), and catches everything the call
  raises: the outcome travels as nestpool's own pickled bytes, so exceptions
  keep their type and worker-side traceback, and an unpicklable result fails
  that task alone with ``TaskPicklingError``.
- A worker that dies is Dask's to handle: its scheduler reruns the tasks that
  were running there up to ``distributed.scheduler.allowed-failures`` times,
  then fails them with ``KilledWorker``, which arrives as ``WorkerDiedError``.
- ``timeout=`` is enforced on the worker: the call runs in a thread of its own
  and, past the limit, the task fails with ``TaskTimeoutError``. Dask cannot
  stop a thread without killing the worker and every other task on it, so the
  late call is abandoned: it runs on until it returns, its result dropped.

This module is imported only when a client is handed to ``Pool`` (and, in the
Dask workers, when they run a nestpool task); the core never imports Dask.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

import distributed

from . import _routing
from ._backend import Work, WorkerBackend
from ._collate import Outcome
from ._errors import NestpoolError, PoolClosedError, TaskTimeoutError, WorkerDiedError
from ._futures import (
    become_helper,
    cancel_notified,
    is_helper,
    start_unless_cancelled,
    stop_helping,
)
from ._item_loop import run_outcomes
from ._protocol import SHAPE_SINGLE
from ._reach import Reach
from ._serialize import (
    FunctionPayload,
    dumps,
    dumps_by_value,
    exception_payload,
    loads,
    pickling_error,
)
from ._waiting import wait_for

__all__ = ["DaskBackend", "run_task"]


class DaskBackend(WorkerBackend):
    """The ``_backend.Backend`` of a ``Pool`` opened with a client.

    It owns the Dask futures of the work in flight (a Dask future that nobody
    references is released, and its task cancelled) and the bridge from each to
    the ``concurrent.futures.Future`` the caller holds.
    """

    #: the workers may be on other hosts: callables go by value unless importable there
    reach: Reach = "portable"

    def __init__(self, client: Any, threads: int | None) -> None:
        if not isinstance(client, distributed.Client):
            raise TypeError(
                f"client must be a distributed.Client, got {type(client).__name__}; "
                "create one with distributed.Client(address) or Client(LocalCluster())"
            )
        if client.asynchronous:
            raise ValueError(
                "Pool(client=...) needs a synchronous distributed.Client (nestpool's "
                "futures are concurrent.futures futures; wrap them with "
                "asyncio.wrap_future); this one was created with asynchronous=True"
            )
        self._client: Any = client
        self._threads = threads
        # re-entrant: Pool.__del__ may shut this down in a thread that holds it
        self._lock = threading.RLock()
        # cf.Future -> its Dask future, for as long as the Dask task is in flight.
        self._pending: dict[Future[Any], Any] = {}
        self._closed = False
        #: seconds one item of each task name takes on a worker (moving average),
        #: for the automatic chunk size of ``map``
        self._item_seconds: dict[str, float] = {}
        # Every worker process, present and future, becomes a nestpool worker
        # when it starts, so that any Dask task there (not only ours) sends its
        # subtasks to that process's persistent pool.
        self._origin = _process_identity()
        client.register_plugin(
            WorkerRoutePlugin(threads, self._origin), name="nestpool-worker-route"
        )

    # ------------------------------------------------------------ WorkerBackend

    def item_seconds(self, name: str) -> float | None:
        return self._item_seconds.get(name)

    def pack_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[bytes]:
        return [dumps_by_value((args, kwargs), "portable")]

    def pack_items(self, items: Sequence[Any], unary: bool) -> list[bytes]:
        # Each item is pickled on its own, as the call it is on the worker.
        no_kwargs: dict[str, Any] = {}
        if unary:
            return [dumps_by_value(((arg,), no_kwargs), "portable") for arg in items]
        return [dumps_by_value((args, no_kwargs), "portable") for args in items]

    def send(
        self,
        work: Work,
        payload: FunctionPayload,
        packed: Any,
        items: Sequence[Any] | None,
        unary: bool,
        future: Future[Any],
    ) -> None:
        self._send(work.name, payload, packed, work.timeout, future, chunk=items is not None)

    def _send(
        self,
        name: str,
        payload: bytes,
        items: list[bytes],
        timeout: float | None,
        future: Future[Any],
        *,
        chunk: bool,
    ) -> None:
        client: Any = self._client
        if self._closed:
            future.set_exception(PoolClosedError("cannot schedule new futures after shutdown"))
            return
        # The key's prefix groups the tasks by name on Dask's dashboard.
        key = f"{name}-{uuid.uuid4().hex}"
        dask_future = client.submit(
            run_task,
            name,
            payload,
            items,
            timeout,
            self._threads,
            self._origin,
            key=key,
            pure=False,
        )
        with self._lock:
            self._pending[future] = dask_future
        future.add_done_callback(self._forward_cancel)
        client.loop.add_callback(self._cascade, dask_future, future, name, chunk)

    def _forward_cancel(self, future: Future[Any]) -> None:
        # The Dask future is looked up, not captured: a caller that keeps its
        # futures must not pin every result in the workers' memory.
        if not future.cancelled():
            return
        with self._lock:
            dask_future = self._pending.get(future)
        if dask_future is not None:
            # Posted to the client's loop: never blocks the cancelling thread,
            # which may be the loop itself.
            client = self._client
            client.loop.add_callback(client.cancel, [dask_future], asynchronous=True)

    async def _cascade(self, dask_future: Any, future: Future[Any], name: str, chunk: bool) -> None:
        """On the client's loop: wait for the Dask task, resolve ``future``."""
        try:
            try:
                result = await dask_future._result(raiseit=False)
                status = dask_future.status
            except BaseException as problem:
                # The client was closed, or the result could not be fetched:
                # fail the future rather than leave its caller waiting for ever.
                result, status = (type(problem), problem, problem.__traceback__), "error"
            self._settle(future, name, chunk, status, result)
        finally:
            # Only now: shutdown(wait=True) waits for the futures listed here.
            with self._lock:
                self._pending.pop(future, None)

    def _settle(
        self, future: Future[Any], name: str, chunk: bool, status: str, result: Any
    ) -> None:
        # The one move to RUNNING of a future: here. If it was cancelled
        # meanwhile, this wakes its waiters (if the pool did not) and stops.
        if status == "cancelled":
            cancel_notified(future)
        if not start_unless_cancelled(future):
            return
        if status == "finished":
            busy, blob = result
            previous = self._item_seconds.get(name)
            self._item_seconds[name] = busy if previous is None else 0.7 * previous + 0.3 * busy
            _resolve(future, name, blob, chunk)
            return
        try:
            _typ, exc, tb = result
            error = _dask_error(name, exc.with_traceback(tb))
        except Exception:
            error = NestpoolError(f"task {name!r}: Dask ended it with status {status!r}")
        # A chunk's future failing as a whole fails each of its items.
        future.set_exception(error)

    # ------------------------------------------------------------ lifecycle

    def slots(self) -> int:
        """Threads of the cluster's workers now (at least 1)."""
        nthreads: dict[str, int] = self._client.nthreads()
        return max(1, sum(nthreads.values()))

    def processes(self) -> int:
        """The number of Dask workers now."""
        return len(self._client.nthreads())

    def worker_pids(self) -> list[int]:
        """The pids of the Dask worker processes (on their own hosts)."""
        pids: dict[str, int] = self._client.run(os.getpid)
        return list(pids.values())

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        """Cancel what is asked; wait for the rest. The client stays open: it
        is the caller's."""
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                cancel_notified(future)
        if wait and pending:
            # Through wait_for: in slices in the main thread (Ctrl-C).
            wait_for(lambda timeout: not wait_futures(pending, timeout=timeout).not_done)

    def terminate(self) -> None:
        """Cancel everything in flight (running calls finish on their workers,
        their results dropped: Dask cannot stop a running task)."""
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        for future in pending:
            cancel_notified(future)

    def describe(self) -> str:
        return f"on Dask threads={self._threads}"


def _resolve(future: Future[Any], name: str, blob: bytes, chunk: bool) -> None:
    try:
        outcomes: list[Outcome] = loads(blob)
    except Exception as exc:
        future.set_exception(pickling_error(name, "result (unpickling in the parent)", exc))
        return
    if chunk:
        future.set_result(outcomes)
        return
    ok, value = outcomes[0]
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _dask_error(name: str, exc: BaseException) -> BaseException:
    """A Dask-side failure as the error nestpool users catch."""
    if isinstance(exc, distributed.KilledWorker):
        worker = exc.last_worker
        pid = getattr(worker, "pid", None)
        address = getattr(worker, "address", worker)
        error = WorkerDiedError(
            f"task {name!r} lost its Dask worker {address} (pid {pid}): {exc} "
            "Other tasks were not affected. Dask reruns such tasks up to "
            "distributed.scheduler.allowed-failures times.",
            task_name=name,
            pid=pid,
        )
        error.__cause__ = exc
        return error
    # Anything else (the task could not be loaded on the worker, say) as itself.
    return exc


# ------------------------------------------------------------------ worker side


class WorkerRoutePlugin(distributed.WorkerPlugin):  # type: ignore[misc, unused-ignore]
    """Installs nestpool's worker route in each Dask worker process at start."""

    def __init__(self, threads: int | None, origin: tuple[str, int]) -> None:
        self.threads = threads
        self.origin = origin

    def setup(self, worker: Any) -> None:
        _enter_worker(self.threads, self.origin)


def _process_identity() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


_entered = False
_enter_lock = threading.Lock()


def _enter_worker(threads: int | None, origin: tuple[str, int]) -> None:
    """Make this Dask worker process a nestpool worker, once (the route is
    process-global and shared by every Dask thread here)."""
    global _entered
    if _entered:
        return
    with _enter_lock:
        if _entered:
            return
        # A Dask worker inside the client's own process (LocalCluster with
        # processes=False; ``origin`` is the client's host and pid) shares the
        # open Pool's route: taking it over would break that pool. Calls there
        # follow the pool (see docs/dask.md).
        if _process_identity() != origin and not _routing.open_routes():
            from ._worker import WorkerRoute

            _routing.enter_worker(WorkerRoute(threads))
        _entered = True


def run_task(
    name: str,
    fn_payload: bytes,
    items: list[bytes],
    timeout: float | None,
    threads: int | None,
    origin: tuple[str, int],
) -> tuple[float, bytes]:
    """Run a process task (one call, or a chunk's calls) in a Dask worker.

    Returns the seconds an item took (on average) and the pickled list of
    outcomes ``(ok, value or exception)``; nothing
    the call raises escapes, so the Dask task itself only fails when its worker
    dies (or it cannot be loaded).
    """
    _enter_worker(threads, origin)
    helper = is_helper()
    if not helper:
        # This Dask thread runs the unstarted subtasks it waits on. Dask
        # reuses its threads for other tasks: the mark goes when the call ends.
        become_helper()
    started = time.perf_counter()
    try:
        blob = _run_items(name, fn_payload, items, timeout)
        return (time.perf_counter() - started) / max(1, len(items)), blob
    finally:
        if not helper:
            stop_helping()


def _run_items(name: str, fn_payload: bytes, items: list[bytes], timeout: float | None) -> bytes:
    from ._worker_calls import load_function

    try:
        fn = load_function(FunctionPayload(fn_payload).key, fn_payload)
    except BaseException as exc:
        error = pickling_error(name, "function (unpickling in the worker)", exc)
        return _dump_outcomes(name, [(False, exception_payload(error, name))] * len(items))
    outcomes: list[Outcome] = []
    for blob in items:
        try:
            args, kwargs = loads(blob)
        except BaseException as exc:
            error = pickling_error(name, "argument (unpickling in the worker)", exc)
            outcomes.append((False, exception_payload(error, name)))
            continue
        if timeout is None:
            outcomes.append(_call(fn, args, kwargs, name))
        else:
            outcomes.append(_call_with_timeout(fn, args, kwargs, name, timeout))
    return _dump_outcomes(name, outcomes)


def _call(fn: Callable[..., Any], args: Any, kwargs: Any, name: str) -> Outcome:
    (outcome,) = run_outcomes(
        fn, [(args, kwargs)], SHAPE_SINGLE, lambda exc: exception_payload(exc, name)
    )
    return outcome


def _call_with_timeout(
    fn: Callable[..., Any], args: Any, kwargs: Any, name: str, timeout: float
) -> Outcome:
    box: list[Outcome] = []

    def target() -> None:
        become_helper()
        try:
            box.append(_call(fn, args, kwargs, name))
        finally:
            stop_helping()

    thread = threading.Thread(target=target, name=f"nestpool-dask-timed-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if box:
        return box[0]
    error = TaskTimeoutError(
        f"task {name!r} ran past its timeout of {timeout:g} s on a Dask worker "
        f"(pid {os.getpid()}); Dask cannot stop a running call, so it was abandoned: "
        "it runs on in that worker until it returns, and its result is dropped",
        task_name=name,
        timeout=timeout,
    )
    return False, exception_payload(error, name)


def _dump_outcomes(name: str, outcomes: list[Outcome]) -> bytes:
    try:
        return dumps(outcomes)
    except BaseException:
        # Find the item(s) that cannot be pickled; the others keep their values.
        checked: list[Outcome] = []
        for ok, value in outcomes:
            try:
                dumps(value)
            except BaseException as exc:
                error = pickling_error(name, "result" if ok else "exception", exc)
                checked.append((False, exception_payload(error, name)))
            else:
                checked.append((ok, value))
        return dumps(checked)
