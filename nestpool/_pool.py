"""``Pool``: the public executor. Options, lifecycle, ``with``, Ctrl-C, and the
``submit``/``map``/``shutdown`` of ``concurrent.futures.Executor``.

What it owns: validating options; registering itself as the process's route
while open (``_routing``); the parent's own subtask thread pool; creating the
dispatcher (and so the workers) on the first process task; leaving the ``with``
block as ``concurrent.futures`` users expect (normally: wait; by an exception:
cancel what has not started; by Ctrl-C: stop the workers at once, so the
program leaves promptly and no worker outlives it). It never touches worker
processes or the task table itself: that is the dispatcher's.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import multiprocessing.context
import os
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast, overload

from . import _routing
from ._collate import (
    CHUNKS_PER_SLOT,
    FULL_CHUNKS_PER_SLOT,
    MAX_AUTO_CHUNK,
    ChunkedMap,
    ChunkSizer,
    MapIterator,
)
from ._dispatcher import Dispatcher, join_all_dispatchers, new_task_id
from ._errors import PoolClosedError, TaskPicklingError
from ._futures import cancel_notified, start_unless_cancelled
from ._inline import map_inline, run_inline
from ._progress import make_reporter, with_progress
from ._records import Task
from ._routing import TaskOptions
from ._serialize import (
    CallableByValue,
    FunctionPayload,
    Reach,
    ReducedByNestpool,
    as_outcomes,
    dumps,
    dumps_callable,
    loads,
    needs_by_value,
    pickling_error,
)
from ._subtask_pool import SubtaskPool
from ._typing import P, R
from ._worker import ForkContextError, InitCall

if TYPE_CHECKING:
    from distributed import Client

    from ._api import ProcessTask, ThreadSubtask
    from ._dask import DaskBackend

__all__ = ["Pool"]

START_METHODS = ("fork", "forkserver", "spawn")
_pool_counter = itertools.count(1)
_open_pools: weakref.WeakSet[Pool] = weakref.WeakSet()

#: The standard library's words (concurrent.futures.process).
SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"
EXIT_MESSAGE = "cannot schedule new futures after interpreter shutdown"
#: Set when the interpreter begins to exit (``_shutdown_open_pools``), as
#: ProcessPoolExecutor's ``_global_shutdown``: no pool takes new work after.
_global_shutdown = False


def default_start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn`` (never a fork of
    a threaded parent)."""
    available = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in available else "spawn"


def usable_cpu_count() -> int:
    """The CPUs this process may run on (affinity-aware), at least 1."""
    counter = getattr(os, "process_cpu_count", None)
    if counter is not None:
        count = counter()
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - platforms without affinity
        count = os.cpu_count()
    return max(1, count or 1)


def _check_count(
    name: str,
    value: object,
    *,
    minimum: int,
    allow_none: bool = True,
    too_small: str | None = None,
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(too_small or f"{name} must be >= {minimum}, got {value}")


class Pool(Executor):
    """A pool of worker processes, each with its own persistent thread pool.

    While it is open, ``@process_task`` calls made in this process (from any
    thread) are queued to its workers and ``@thread_subtask`` calls run on its
    thread pool here; inside a worker, subtasks run on that worker's own
    thread pool (see the routing table in the docs). It is a
    ``concurrent.futures.Executor``: ``submit``, ``map`` and ``shutdown``
    behave as the standard library documents them, and it takes
    ``ProcessPoolExecutor``'s ``max_workers`` and ``mp_context`` with their
    meaning there, so it can stand in for one (a Dask scheduler too:
    ``dask.compute(..., scheduler=pool)``).

    Args:
        processes: worker processes; None for the usable CPU count; 0 runs
            every process task inline, in the caller (debugging, pdb, coverage).
        threads: threads of each thread pool (here and in each worker); None
            for ``ThreadPoolExecutor``'s default; 0 runs subtasks inline.
        tasks_per_process: how many process tasks one worker runs at once, so
            that while one waits on its subtasks' IO another uses the CPU.
            With 1 the worker's main thread runs the initializer and every
            task, as in ``ProcessPoolExecutor`` (a task may install signal
            handlers); with more, tasks run on threads of their own.
        start_method: ``"fork"``, ``"forkserver"`` or ``"spawn"``; None for
            ``forkserver`` where available, else ``spawn`` (``fork`` when
            ``initargs`` hold objects of a fork context, which only forked
            workers can use: ``multiprocessing.Queue()`` on Linux before 3.14).
        initializer: called with ``initargs`` at the start of each worker.
        initargs: arguments for ``initializer``.
        max_tasks_per_child: replace each worker after this many process
            tasks (a chunk of a ``map`` counts as one; subtasks do not count).
        max_workers: ``ProcessPoolExecutor``'s name for ``processes``, with
            its rule: the number of worker processes, None for the usable CPU
            count, and 0 or less is a ``ValueError``. Give one of the two.
        mp_context: a ``multiprocessing`` context, as ``ProcessPoolExecutor``
            takes it: the workers are started through it, with its start
            method (``"fork"``, ``"forkserver"`` or ``"spawn"``). Give it or
            ``start_method``, not both.
        client: a ``distributed.Client``: process tasks run on that Dask
            cluster instead of local worker processes (needs
            ``nestpool[dask]``; see docs/dask.md). The cluster decides the
            workers, so ``processes``, ``tasks_per_process``,
            ``start_method``, ``initializer``, ``initargs``,
            ``max_tasks_per_child``, ``max_workers`` and ``mp_context`` must
            be left out; ``threads`` sizes the subtask pool here and in each
            Dask worker process.

    Raises:
        ValueError: a negative count, ``max_workers`` of 0 or less, an unknown
            start method (``mp_context``'s included), or an option the Dask
            cluster decides given with ``client``.
        TypeError: a count that is not an int, an ``mp_context`` that is not a
            ``multiprocessing`` context, or both names of one option
            (``processes`` and ``max_workers``, ``start_method`` and
            ``mp_context``).

    Example:
        >>> with Pool(processes=4, threads=32):
        ...     total = sum(crunch.map(batches))
        >>> with Pool(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        ...     sizes = list(pool.map(len, pages))   # as with ProcessPoolExecutor

    When several pools are open at once in one process, decorated calls go to
    the one opened last, until it shuts down; ``submit`` always uses its own
    pool.

    A pool that can run more process tasks at once than there are cores
    (``processes x tasks_per_process`` above the usable CPU count, the shape
    that overlaps IO with CPU work) shares that many *compute slots* between
    its workers: a task that comes back from waiting on its subtasks queues
    for one before it goes on, so that at most one task per core computes
    and their CPU phases run one after another at full speed instead of all
    together (docs/performance.md). A task that never waits on subtasks never
    takes one, and the queue is bounded, so it cannot deadlock.
    """

    def __init__(
        self,
        processes: int | None = None,
        threads: int | None = None,
        *,
        tasks_per_process: int = 1,
        start_method: str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        max_workers: int | None = None,
        mp_context: multiprocessing.context.BaseContext | None = None,
        client: Client | None = None,
    ) -> None:
        if max_workers is not None and processes is not None:
            raise TypeError(
                "Pool() got both processes and max_workers: they are one option "
                "(max_workers is ProcessPoolExecutor's name for it); give one"
            )
        if mp_context is not None and start_method is not None:
            raise TypeError(
                "Pool() got both start_method and mp_context: the context decides the "
                "start method; give one"
            )
        if client is not None:
            _check_no_local_options(
                processes=processes,
                tasks_per_process=tasks_per_process,
                start_method=start_method,
                initializer=initializer,
                initargs=initargs,
                max_tasks_per_child=max_tasks_per_child,
                max_workers=max_workers,
                mp_context=mp_context,
            )
        if isinstance(threads, multiprocessing.context.BaseContext):
            raise TypeError(
                "threads must be an int or None, got a multiprocessing context: "
                "ProcessPoolExecutor's second argument is mp_context, Pool's is "
                "threads; pass it as mp_context=..."
            )
        if max_workers is not None:
            # ProcessPoolExecutor's check and message: processes=0 means
            # inline, max_workers keeps the standard library's meaning.
            _check_count(
                "max_workers",
                max_workers,
                minimum=1,
                too_small="max_workers must be greater than 0",
            )
            processes = max_workers
        _check_count("processes", processes, minimum=0)
        _check_count("threads", threads, minimum=0)
        _check_count("tasks_per_process", tasks_per_process, minimum=1, allow_none=False)
        _check_count("max_tasks_per_child", max_tasks_per_child, minimum=1)
        if mp_context is not None:
            if not isinstance(mp_context, multiprocessing.context.BaseContext):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise TypeError(
                    "mp_context must be a multiprocessing context "
                    f"(multiprocessing.get_context(...)), got {type(mp_context).__name__}"
                )
            start_method = mp_context.get_start_method()
            if start_method not in START_METHODS:
                raise ValueError(
                    f"mp_context starts processes by {start_method!r}; nestpool's workers "
                    f"start by {', '.join(map(repr, START_METHODS))}"
                )
        defaulted = start_method is None
        if start_method is None:
            start_method = default_start_method()
        elif start_method not in START_METHODS:
            raise ValueError(
                f"start_method must be one of {', '.join(map(repr, START_METHODS))} "
                f"or None, got {start_method!r}"
            )
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method {start_method!r} is not available on this platform")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be callable")

        self._initializer: InitCall | None = None
        if initializer is not None:
            try:
                self._initializer = _init_call(initializer, tuple(initargs), start_method)
            except _NeedsFork:
                # Objects of a fork context in initargs (multiprocessing.Queue()
                # of the default context on Linux before 3.14) can only reach
                # forked workers: ProcessPoolExecutor's default context forks.
                if not defaulted:
                    raise
                start_method = "fork"
                self._initializer = _init_call(initializer, tuple(initargs), start_method)
        self._processes = usable_cpu_count() if processes is None else processes
        self._threads = threads
        self._tasks_per_process = tasks_per_process
        self._start_method = start_method
        #: how far the callables sent to the workers must reach
        self._reach: Reach = "forked" if start_method == "fork" else "spawned"
        #: what starts the workers: the caller's mp_context, or the start method's
        self._context = mp_context or multiprocessing.get_context(start_method)
        self._max_tasks_per_child = max_tasks_per_child
        self._name = f"nestpool-{next(_pool_counter)}"
        self._lock = threading.Lock()
        self._dispatcher: Dispatcher | None = None
        self._subtasks: SubtaskPool | None = None
        self._closed = False
        #: closed by the interpreter's exit, not by its user (which words
        #: the refusal of later work: see _refusal)
        self._closed_at_exit = False
        #: set when shutdown has taken its last look at the dispatcher: none may
        #: be started after it, since nobody would stop it
        self._dispatcher_final = False
        self._dask: DaskBackend | None = None
        if client is not None:
            from ._dask import DaskBackend

            self._dask = DaskBackend(client, threads)
        _open_pools.add(self)
        _routing.register(self)

    # ------------------------------------------------------------ properties

    @property
    def processes(self) -> int:
        """The number of worker processes (0: process tasks run inline); with a
        client, the number of Dask workers now.

        Example:
            >>> Pool(processes=4).processes
            4
        """
        if self._dask is not None:
            return self._dask.workers()
        return self._processes

    @property
    def threads(self) -> int | None:
        """Threads per thread pool (None: the standard library's default).

        Example:
            >>> Pool(threads=32).threads
            32
        """
        return self._threads

    @property
    def tasks_per_process(self) -> int:
        """How many process tasks one worker runs at once.

        Example:
            >>> Pool(tasks_per_process=2).tasks_per_process
            2
        """
        return self._tasks_per_process

    @property
    def start_method(self) -> str:
        """The start method of the worker processes.

        Example:
            >>> Pool().start_method          # the safe default on Linux
            'forkserver'
        """
        return self._start_method

    @property
    def _max_workers(self) -> int:
        """How many process tasks run at once: ``processes x
        tasks_per_process`` (at least 1: an inline pool runs one at a time);
        with a client, the threads of the Dask workers.

        ``ProcessPoolExecutor`` has this attribute (its worker count, each
        running one task), and Dask's local scheduler reads it to know how
        many tasks to keep submitted: ``dask.compute(..., scheduler=pool)``,
        or ``dask.config.set(pool=pool)``.

        Example:
            >>> Pool(processes=4, tasks_per_process=2)._max_workers
            8
        """
        if self._dask is not None:
            return self._dask.slots()
        return max(1, self._processes * self._tasks_per_process)

    def worker_pids(self) -> list[int]:
        """The pids of the live worker processes (a snapshot; for diagnostics).

        Example:
            >>> with Pool(processes=2) as pool:
            ...     crunch(batch).result()
            ...     pool.worker_pids()
            [4242, 4243]
        """
        if self._dask is not None:
            return self._dask.worker_pids()
        dispatcher = self._dispatcher
        return [] if dispatcher is None else dispatcher.worker_pids()

    # ------------------------------------------------------------ route

    def _get_dispatcher(self) -> Dispatcher:
        """The dispatcher, started on the first process task.

        Raises:
            PoolClosedError: the pool was shut down before any process task
                (a call that read the route just before ``shutdown``); no
                worker is started once ``shutdown`` has looked for the
                dispatcher to stop, since nobody would stop it. (Until then a
                subtask still running here may make the first call.)
        """
        dispatcher = self._dispatcher
        if dispatcher is None:
            with self._lock:
                dispatcher = self._dispatcher
                if dispatcher is None and self._dispatcher_final:
                    raise PoolClosedError(SHUTDOWN_MESSAGE)
                if dispatcher is None:
                    dispatcher = self._dispatcher = Dispatcher(
                        processes=self._processes,
                        threads=self._threads,
                        tasks_per_process=self._tasks_per_process,
                        context=self._context,
                        initializer=self._initializer,
                        max_tasks_per_child=self._max_tasks_per_child,
                        name=self._name,
                        cores=usable_cpu_count(),
                    )
        return dispatcher

    def _submit_call(
        self,
        name: str,
        fn_payload: Callable[[Reach], FunctionPayload],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Future[Any]:
        if self._dask is not None:
            return self._dask.submit(name, fn_payload, args, kwargs, timeout)
        future: Future[Any] = Future()
        try:
            payload = fn_payload(self._reach)
        except BaseException as exc:
            future.set_exception(pickling_error(name, "function", exc))
            return future
        try:
            args_payload = dumps([(args, kwargs)])
        except BaseException as exc:
            # Whatever user code raised while pickling (SystemExit included)
            # fails this one future.
            future.set_exception(pickling_error(name, "argument", exc))
            return future
        task = Task(new_task_id(), name, payload, args_payload, future, timeout, None)
        try:
            dispatcher = self._get_dispatcher()
        except PoolClosedError as exc:
            future.set_running_or_notify_cancel()
            future.set_exception(exc)
            return future
        dispatcher.submit(task)
        return future

    def _refusal(self) -> RuntimeError:
        """The error for work given to this pool once it is closed, or once
        the interpreter has begun to exit, as ``ProcessPoolExecutor`` raises
        them: a pool its user shut down says "after shutdown" (the check that
        comes first there) with ``PoolClosedError``, a ``RuntimeError``; any
        other a plain ``RuntimeError`` "after interpreter shutdown"."""
        if self._closed and not self._closed_at_exit:
            return PoolClosedError(SHUTDOWN_MESSAGE)
        return RuntimeError(EXIT_MESSAGE)

    def submit_task(
        self, options: TaskOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        """Route one ``@process_task`` call here (``_routing.Route``).

        Raises:
            RuntimeError: the interpreter is exiting (as ``submit``).
        """
        if _global_shutdown:
            raise self._refusal()
        if self._processes == 0:
            return run_inline(options.fn, args, kwargs)
        return self._submit_call(options.name, options.get_payload, args, kwargs, options.timeout)

    def map_task(
        self,
        options: TaskOptions,
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
    ) -> Iterator[Any]:
        """Route a ``@process_task`` ``.map`` here (``_routing.Route``).

        Raises:
            RuntimeError: the interpreter is exiting (as ``map``).
        """
        if _global_shutdown:
            raise self._refusal()
        if self._processes == 0:
            return map_inline(options.fn, iterables)
        if options.timeout is not None and chunksize is None:
            chunksize = 1  # a timeout is per call: never batch timed calls
        try:
            return self._map_chunks(
                options.name,
                options.get_payload,
                iterables,
                ordered=ordered,
                chunksize=chunksize,
                buffersize=buffersize,
                timeout=None,
                task_timeout=options.timeout,
            )
        except PoolClosedError:
            return _raise_closed()  # the route was read just before shutdown

    def subtask_pool(self) -> SubtaskPool | None:
        """The parent's thread pool for subtasks (None with ``threads=0``)."""
        if self._threads == 0:
            return None
        pool = self._subtasks
        if pool is None:
            with self._lock:
                pool = self._subtasks
                if pool is None:
                    pool = self._subtasks = SubtaskPool(self._threads, name=f"{self._name}-subtask")
        return pool

    def _map_chunks(
        self,
        name: str,
        fn_payload: Callable[[Reach], FunctionPayload],
        iterables: tuple[Iterable[Any], ...],
        *,
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        timeout: float | None,
        task_timeout: float | None,
    ) -> ChunkedMap[Any]:
        if self._dask is not None:
            return self._dask.map(
                name,
                fn_payload,
                iterables,
                ordered=ordered,
                chunksize=chunksize,
                buffersize=buffersize,
                timeout=timeout,
                task_timeout=task_timeout,
            )
        if task_timeout is not None:
            # A timeout is per call: a chunk shares one deadline, so quick
            # items batched after slow ones would be stopped with them.
            chunksize = 1
        dispatcher = self._get_dispatcher()
        slots = self._processes * self._tasks_per_process
        cap = buffersize if buffersize is not None else 1 << 30
        if chunksize is None and buffersize is not None:
            cap = max(1, buffersize // (2 * slots))

        def measure() -> float | None:
            return dispatcher.item_seconds.get(name)

        # One iterable: a chunk carries the bare arguments (``unary``), not
        # 1-tuples of them.
        unary = len(iterables) == 1

        def submit(items: Sequence[Any]) -> tuple[Future[Any], bool]:
            future: Future[Any] = Future()
            try:
                payload = fn_payload(self._reach)
            except BaseException as exc:
                future.set_exception(pickling_error(name, "function", exc))
                return future, True
            # A chunk travels as its positional-argument tuples: no kwargs dict
            # per item (a map has none), which halves the pickling per item.
            try:
                args_payload = dumps(items)
            except BaseException:
                return _submit_picklable_items(
                    dispatcher, name, payload, items, task_timeout, unary
                )
            task = Task(
                new_task_id(), name, payload, args_payload, future, task_timeout, items, unary
            )
            dispatcher.submit(task)
            return future, True

        return ChunkedMap(
            iterables,
            submit,
            ChunkSizer(chunksize, measure, cap),
            ordered=ordered,
            buffersize=buffersize,
            max_units=CHUNKS_PER_SLOT * slots,
            timeout=timeout,
            unary=unary,
            max_items=FULL_CHUNKS_PER_SLOT * MAX_AUTO_CHUNK * slots if chunksize is None else None,
        )

    # ------------------------------------------------------------ Executor

    # A decorated task is itself callable (returning a Future), so the generic
    # overload alone would type pool.submit(crunch, x) as Future[Future[R]];
    # the first overload says what runs: the plain function, giving Future[R].
    # A partial of a task runs the plain function too; a partial of anything
    # else that returns a Future could never send it back, so the second
    # overload is right for every partial whose value is a Future.
    @overload
    def submit(
        self,
        fn: ProcessTask[P, R] | ThreadSubtask[P, R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Future[R]: ...
    @overload
    def submit(
        self, fn: functools.partial[Future[R]], /, *args: object, **kwargs: object
    ) -> Future[R]: ...
    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` as a process task; return its future.

        ``fn`` is any picklable callable: functions the workers cannot import
        (lambdas, closures, ``__main__``) are sent by value with cloudpickle.
        A decorated ``@process_task`` runs its plain function, and so does a
        ``functools.partial`` of one (nested partials too), with the partial's
        arguments: ``loop.run_in_executor(pool, partial(crunch, scale=2), x)``
        gives ``crunch``'s value.

        Args:
            fn: the callable to run in a worker process (positional only).
            *args: its positional arguments (pickled).
            **kwargs: its keyword arguments (pickled).

        Returns:
            A ``concurrent.futures.Future`` resolved with the value, or with the
                exception (an argument that cannot be pickled fails it with
                ``TaskPicklingError``).

        Raises:
            PoolClosedError: (a ``RuntimeError``) the pool was shut down:
                "cannot schedule new futures after shutdown".
            RuntimeError: the interpreter is exiting: "cannot schedule new
                futures after interpreter shutdown", as ``ProcessPoolExecutor``.

        Example:
            >>> future = pool.submit(pow, 2, 10)
            >>> future.result()
            1024
        """
        if self._closed or _global_shutdown:
            raise self._refusal()
        unwrapped = _partial_of_task(fn)
        if unwrapped is not None:
            # Called in the worker, the task would give a Future, which cannot
            # come back: the task's own path runs, with the partial's arguments.
            fn, first, keywords = unwrapped
            args = (*first, *args)
            kwargs = {**keywords, **kwargs}
        options: TaskOptions | None = getattr(fn, "_self_options", None)
        if options is not None:
            # A decorated function: its plain function runs in the worker.
            args = (*_bound_instance(fn), *args)
            if self._processes == 0:
                return run_inline(options.fn, args, kwargs)
            return self._submit_call(
                options.name, options.get_payload, args, kwargs, options.timeout
            )
        if self._processes == 0:
            return run_inline(fn, args, kwargs)
        name = callable_name(fn)
        return self._submit_call(name, functools.partial(dumps_callable, fn), args, kwargs, None)

    @overload
    def map(
        self,
        fn: ProcessTask[..., R] | ThreadSubtask[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: functools.partial[Future[R]],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[Any]:
        """Like ``concurrent.futures.Executor.map``, lazy and bounded.

        Returns an iterator of ``fn``'s values in input order. Work starts at
        the call; input is pulled only as results are taken, with at most
        ``buffersize`` items in flight (default: a few chunks per worker slot).

        Args:
            fn: a picklable callable (by value for lambdas and ``__main__``);
                a decorated task, or a ``functools.partial`` of one, runs its
                plain function.
            *iterables: zipped into the arguments of each call.
            timeout: seconds from the call; iterating past it raises
                ``TimeoutError`` (``concurrent.futures.TimeoutError``).
            chunksize: items sent to a worker at once.
            buffersize: the most items in flight at once (as Python 3.14).
            progress: True shows a tqdm progress bar (the ``nestpool[progress]``
                extra); a callable is called as ``progress(done)`` after each
                value is handed out, in the consuming thread.

        Raises:
            ValueError: ``chunksize`` < 1 or ``buffersize`` < 1.
            TypeError: ``buffersize`` is not an int or None.
            PoolClosedError: the pool was shut down, or the interpreter is
                exiting (as ``submit``).
            ImportError: ``progress=True`` and tqdm is not installed.

        Example:
            >>> list(pool.map(pow, [2, 3], [5, 2]))
            [32, 9]
            >>> sizes = list(pool.map(len, pages, progress=True))   # a tqdm bar
        """
        # The checks and messages of ProcessPoolExecutor.map (Python 3.14).
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        # Checked at run time too, for callers that are not type-checked.
        if buffersize is not None and not isinstance(buffersize, int):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if self._closed or _global_shutdown:
            raise self._refusal()
        options: TaskOptions | None = getattr(fn, "_self_options", None)
        plain: Callable[..., Any] = fn
        unwrapped = None if options is not None else _partial_of_task(fn)
        payload: Callable[[Reach], FunctionPayload]
        if unwrapped is not None:
            # A partial of a task: a partial of the task's plain function runs
            # (the task itself would give a Future, which cannot come back).
            task, first, keywords = unwrapped
            task_options: TaskOptions = task._self_options
            plain = functools.partial(
                _PlainFunction(task_options), *_bound_instance(task), *first, **keywords
            )
            name = task_options.name
            options = task_options
            payload = functools.partial(dumps_callable, plain)
        elif options is not None:
            plain = options.fn
            iterables = (*map(itertools.repeat, _bound_instance(fn)), *iterables)
            name, payload = options.name, options.get_payload
        else:
            name, payload = callable_name(fn), functools.partial(dumps_callable, fn)

        reporter = make_reporter(progress, iterables, name)
        if self._processes == 0:
            return with_progress(map_inline(plain, iterables), reporter)
        iterator = self._map_chunks(
            name,
            payload,
            iterables,
            ordered=True,
            chunksize=chunksize,
            buffersize=buffersize,
            timeout=timeout,
            task_timeout=None if options is None else options.timeout,
        )
        return with_progress(iterator, reporter)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work and release the workers when the work is done.

        Args:
            wait: block until every running and queued task has finished and
                the workers have exited.
            cancel_futures: cancel the tasks that have not started.

        After it, ``submit`` raises ``RuntimeError`` and decorated calls in this
        process no longer route here. Calling it again is harmless.

        Example:
            >>> pool = Pool()
            >>> futures = [crunch(b) for b in batches]
            >>> pool.shutdown(cancel_futures=True)   # what has not started is cancelled
        """
        with self._lock:
            self._closed = True
            subtasks = self._subtasks
        # Subtasks still running here may call process tasks: let them finish
        # while this pool still takes their calls.
        if subtasks is not None:
            subtasks.shutdown(wait=wait, cancel_futures=cancel_futures)
        _routing.unregister(self)
        _open_pools.discard(self)
        if self._dask is not None:
            self._dask.shutdown(wait=wait, cancel_futures=cancel_futures)
        with self._lock:
            dispatcher = self._dispatcher
            self._dispatcher_final = True
        if dispatcher is not None:
            dispatcher.shutdown(cancel_futures=cancel_futures)
            if wait:
                dispatcher.join()

    def terminate(self) -> None:
        """Stop now: cancel what has not started, kill the workers (their
        running tasks fail with ``WorkerDiedError``) and wait for them to exit.

        Used when the ``with`` block is left by Ctrl-C; threads of the parent's
        subtask pool cannot be stopped and finish what they run.

        Example:
            >>> pool.terminate()   # now: running tasks fail with WorkerDiedError
        """
        with self._lock:
            self._closed = True
            subtasks = self._subtasks
            dispatcher = self._dispatcher
            self._dispatcher_final = True
        _routing.unregister(self)
        _open_pools.discard(self)
        if subtasks is not None:
            subtasks.shutdown(wait=False, cancel_futures=True)
        if self._dask is not None:
            self._dask.terminate()
        if dispatcher is not None:
            dispatcher.terminate()
            dispatcher.join(10)

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C: leave promptly, leave no worker behind. Any other
            # exception (SystemExit too) lets running tasks finish, as
            # concurrent.futures does: a task may be writing a file.
            self.terminate()
            return
        try:
            self.shutdown(wait=True, cancel_futures=exc_type is not None)
        except BaseException:
            # Ctrl-C while waiting for the work to finish.
            self.terminate()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        if self._dask is not None:
            return f"<nestpool.Pool {self._name} {state} on Dask threads={self._threads}>"
        return (
            f"<nestpool.Pool {self._name} {state} processes={self._processes} "
            f"threads={self._threads} tasks_per_process={self._tasks_per_process} "
            f"start_method={self._start_method!r}>"
        )


class _NeedsFork(TaskPicklingError):
    """The initializer's arguments hold objects of a fork context."""


def _init_call(
    initializer: Callable[..., object], initargs: tuple[Any, ...], start_method: str
) -> InitCall:
    """The initializer and its arguments as each worker gets them.

    Under fork they are inherited as they are. Otherwise they are pickled as
    the worker starts (the only time a ``multiprocessing.Queue`` lets itself be
    pickled), the initializer by value when the workers cannot import it (a
    lambda, a notebook's function); a dry run here makes one that cannot
    travel fail the constructor.

    Raises:
        TaskPicklingError: the initializer or an argument cannot be pickled
            (``_NeedsFork`` when an argument belongs to a fork context).
    """
    if start_method == "fork":
        return InitCall(initializer, initargs)
    try:
        sent: Any = CallableByValue(initializer) if needs_by_value(initializer) else initializer
        call = InitCall(sent, initargs)
        call.check()
    except ForkContextError as exc:
        error = pickling_error(
            getattr(initializer, "__qualname__", repr(initializer)), "initializer", exc
        )
        raise _NeedsFork(*error.args, task_name=error.task_name, direction=error.direction) from exc
    except BaseException as exc:
        raise pickling_error(
            getattr(initializer, "__qualname__", repr(initializer)), "initializer", exc
        ) from exc
    return call


def _raise_closed() -> Iterator[Any]:
    raise PoolClosedError(SHUTDOWN_MESSAGE)
    yield  # a generator: the error comes at the first next(), as a task's would


def callable_name(fn: object) -> str:
    """The name of a callable in errors and logs: its qualified name; for a
    ``functools.partial``, ``partial(<name>)``; for a callable object, its
    class's qualified name (never a repr with an address in it)."""
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str) and name:
        return name
    inner = getattr(fn, "func", None)
    if isinstance(fn, functools.partial) and inner is not None:
        return f"partial({callable_name(inner)})"
    # (pyright narrows fn to object | partial[Unknown] here: a partial's type is unsolved)
    return type(fn).__qualname__  # pyright: ignore[reportUnknownArgumentType]


_PARTIAL_CALL = cast("type[functools.partial[Any]]", functools.partial).__call__


def _partial_of_task(fn: object) -> tuple[Any, tuple[Any, ...], dict[str, Any]] | None:
    """For ``functools.partial`` layers around a decorated task (nested ones
    too): the task, and the arguments and keywords the layers put before a
    call's own; None for anything else.

    A partial subclass with its own ``__call__`` is left alone: it may not
    call its function the usual way.
    """
    layers: list[functools.partial[Any]] = []
    inner: object = fn
    # Only functools.partial and its subclasses that keep its __call__ have
    # this very __call__ (a class without one gives type.__call__ here).
    while type(inner).__call__ is _PARTIAL_CALL:
        layer = cast("functools.partial[Any]", inner)
        layers.append(layer)
        inner = layer.func
    if not layers or getattr(inner, "_self_options", None) is None:
        return None
    args: tuple[Any, ...] = ()
    keywords: dict[str, Any] = {}
    # partial(partial(f, a, k=1), b, k=2)(c) is f(a, b, c, k=2): the innermost
    # layer's arguments first, an outer layer's keyword over an inner one's.
    for layer in reversed(layers):
        args += layer.args
        keywords.update(layer.keywords)
    return inner, args, keywords


class _PlainFunction(ReducedByNestpool):
    """Calls a decorated task's plain function; pickles as that function
    itself (the task's own payload: by reference, or by value), so that a
    partial of it arrives in the worker as a partial of the plain function."""

    __slots__ = ("options",)

    def __init__(self, options: TaskOptions) -> None:
        self.options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.options.fn(*args, **kwargs)

    def _self_reduce(self, reach: Reach) -> tuple[Any, ...]:
        return loads, (bytes(self.options.get_payload(reach)),)

    def __reduce__(self) -> tuple[Any, ...]:
        return self._self_reduce("spawned")


def _check_no_local_options(**options: Any) -> None:
    defaults = {"tasks_per_process": 1, "initargs": ()}
    given = [name for name, value in options.items() if value != defaults.get(name)]
    if given:
        raise ValueError(
            f"Pool(client=...) runs process tasks on the Dask cluster, which decides "
            f"its worker processes; drop {', '.join(given)} (size the cluster instead: "
            "n_workers and threads_per_worker, or `dask worker --nworkers --nthreads`; "
            "per-worker setup goes in a Dask WorkerPlugin)"
        )


def _bound_instance(task: object) -> tuple[Any, ...]:
    """``(instance,)`` for a decorated method bound to one (``obj.method``),
    ``(cls,)`` for a class method, else ``()``.

    The pool runs a decorated task's plain function, which wants the instance
    (or, for a class method, the class) first (``_api._bound_first``).
    """
    if isinstance(task, types.MethodType):
        # @classmethod over a decorated function on Python 3.13+, where
        # classmethod no longer binds through the task's __get__: a plain
        # bound method whose __self__ is the class.
        return (task.__self__,)
    from ._api import _bound_first

    return _bound_first(task)


def _submit_picklable_items(
    dispatcher: Dispatcher,
    name: str,
    payload: FunctionPayload,
    items: Sequence[Any],
    task_timeout: float | None,
    unary: bool = False,
) -> tuple[Future[Any], bool]:
    """A chunk did not pickle: fail the bad items alone, send the others."""
    outcomes: list[tuple[bool, Any] | None] = [None] * len(items)
    good: list[int] = []
    for index, args in enumerate(items):
        try:
            dumps(args)
        except BaseException as exc:
            outcomes[index] = (False, pickling_error(name, "argument", exc))
        else:
            good.append(index)
    future: Future[Any] = Future()
    if not good:
        future.set_result(outcomes)
        return future, True
    inner: Future[Any] = Future()
    good_items = [items[i] for i in good]
    task = Task(
        new_task_id(), name, payload, dumps(good_items), inner, task_timeout, good_items, unary
    )

    def merge(done: Future[Any]) -> None:
        if done.cancelled():
            cancel_notified(future)
            return
        exc = done.exception()
        sent = None if exc is not None else as_outcomes(done.result())
        for position, index in enumerate(good):
            outcomes[index] = (False, exc) if sent is None else sent[position]
        if start_unless_cancelled(future):  # False: its map was closed
            future.set_result(outcomes)

    def forward_cancel(outer: Future[Any]) -> None:
        # The map cancels the future it holds: the items sent must not run.
        if outer.cancelled():
            cancel_notified(inner)

    inner.add_done_callback(merge)
    future.add_done_callback(forward_cancel)
    dispatcher.submit(task)
    return future, True


def _shutdown_open_pools() -> None:
    # At interpreter exit, as the standard library's executors do: refuse new
    # work from now on (ProcessPoolExecutor's _python_exit sets its
    # _global_shutdown first too), finish the work of pools the program left
    # open, then release their workers.
    global _global_shutdown
    _global_shutdown = True
    for pool in list(_open_pools):
        pool._closed_at_exit = True
        try:
            pool.shutdown(wait=True)
        except BaseException:  # pragma: no cover - best effort at exit
            pool.terminate()
    join_all_dispatchers()


# A forked worker inherits the parent's registry but owns none of its pools: on
# its way out it must not shut them down (their locks may have been held by
# parent threads at the fork, and it would hang forever in that shutdown).
os.register_at_fork(after_in_child=_open_pools.clear)

_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_shutdown_open_pools)
else:  # pragma: no cover
    import atexit

    atexit.register(_shutdown_open_pools)
