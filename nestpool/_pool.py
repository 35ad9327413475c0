"""``Pool``: the public executor. Options, lifecycle, ``with``, Ctrl-C, and the
``submit``/``map``/``shutdown`` of ``concurrent.futures.Executor``.

What it owns: validating options (through ``_options``); choosing, once, the
backend that runs its process tasks (``_backend.Backend``: inline, the local
process engine, or Dask) and handing every call, map, shutdown and terminate
to it; registering itself as the process's route while open (``_routing``);
the parent's own subtask thread pool; refusing work once closed; leaving the
``with`` block as ``concurrent.futures`` users expect (normally: wait; by an
exception: cancel what has not started; by Ctrl-C, or the cancellation of the
asyncio task that holds it: stop the workers at once, so the program leaves
promptly and no worker outlives it). ``async with`` does the same without
blocking the event loop (``_async_pool``); ``map`` is its base class's
(``_pool_map``).

It never asks which backend it holds, and never touches worker processes,
the dispatcher or Dask itself: those are the backends'.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import multiprocessing.context
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from . import _async_pool, _exit, _routing
from ._backend import Backend
from ._calls import submit_work
from ._errors import PoolClosedError
from ._inline import InlineBackend
from ._local import SHUTDOWN_MESSAGE, LocalBackend
from ._options import PoolOptions, usable_cpu_count
from ._pool_map import ExecutorMap
from ._routing import TaskOptions
from ._subtask_pool import SubtaskPool
from ._typing import P, R

if TYPE_CHECKING:
    from distributed import Client

    from ._process_task import ProcessTask
    from ._thread_subtask import ThreadSubtask

__all__ = ["Pool"]

_pool_counter = itertools.count(1)


class Pool(ExecutorMap):
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
        options = PoolOptions.resolve(
            processes,
            threads,
            tasks_per_process=tasks_per_process,
            start_method=start_method,
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_child=max_tasks_per_child,
            max_workers=max_workers,
            mp_context=mp_context,
            local=client is None,
        )
        self._threads = options.threads
        self._tasks_per_process = options.tasks_per_process
        self._start_method = options.start_method
        self._name = f"nestpool-{next(_pool_counter)}"
        # re-entrant: __del__ may run in a thread that holds it (the cyclic GC)
        self._lock = threading.RLock()
        self._subtasks: SubtaskPool | None = None
        self._closed = False
        #: closed by the interpreter's exit, not by its user (which words
        #: the refusal of later work: see _refusal)
        self._closed_at_exit = False
        #: what runs the process tasks; chosen here, never asked about after
        self._backend: Backend
        if client is not None:
            from ._dask import DaskBackend

            self._backend = DaskBackend(client, options.threads)
        elif options.processes == 0:
            self._backend = InlineBackend(options.describe())
        else:
            self._backend = LocalBackend(options, name=self._name, cores=usable_cpu_count())
        _exit.open_pools.add(self)
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
        return self._backend.processes()

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
        return self._backend.slots()

    def worker_pids(self) -> list[int]:
        """The pids of the live worker processes (a snapshot; for diagnostics).

        Example:
            >>> with Pool(processes=2) as pool:
            ...     crunch(batch).result()
            ...     pool.worker_pids()
            [4242, 4243]
        """
        return self._backend.worker_pids()

    # ------------------------------------------------------------ route

    def _refusal(self) -> RuntimeError:
        """The error for work given to this pool once it is closed, or once
        the interpreter has begun to exit, as ``ProcessPoolExecutor`` raises
        them: a pool its user shut down says "after shutdown" (the check that
        comes first there) with ``PoolClosedError``, a ``RuntimeError``; any
        other a plain ``RuntimeError`` "after interpreter shutdown"."""
        if self._closed and not self._closed_at_exit:
            return PoolClosedError(SHUTDOWN_MESSAGE)
        return RuntimeError(_exit.EXIT_MESSAGE)

    def submit_task(
        self, options: TaskOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        """Route one ``@process_task`` call here (``_routing.Route``).

        Raises:
            RuntimeError: the interpreter is exiting (as ``submit``).
        """
        if _exit.global_shutdown:
            raise self._refusal()
        return self._backend.submit(options, args, kwargs)

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
        if _exit.global_shutdown:
            raise self._refusal()
        try:
            return self._backend.map(
                options,
                iterables,
                ordered=ordered,
                chunksize=chunksize,
                buffersize=buffersize,
                timeout=None,
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
        if self._closed or _exit.global_shutdown:
            raise self._refusal()
        work, args, kwargs = submit_work(fn, args, kwargs)
        return self._backend.submit(work, args, kwargs)

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
        _exit.open_pools.discard(self)
        self._backend.shutdown(wait=wait, cancel_futures=cancel_futures)

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
        _routing.unregister(self)
        _exit.open_pools.discard(self)
        if subtasks is not None:
            subtasks.shutdown(wait=False, cancel_futures=True)
        self._backend.terminate()

    def _start_engine(self) -> None:
        """Start what runs the process tasks (it may block: a helper thread
        of ``async with`` calls it); nothing once closed."""
        if not self._closed:
            try:
                self._backend.ready()
            except PoolClosedError:
                pass  # shut down meanwhile

    def __del__(self) -> None:
        # As ProcessPoolExecutor: a pool the program no longer holds, and did
        # not shut down, finishes the work it was given (its dispatcher and
        # futures do not need this object) and then releases its workers and
        # threads, rather than keep them until the interpreter exits.
        try:
            if not self._closed:
                self.shutdown(wait=False)
        except Exception:  # pragma: no cover - a pool half made, or at exit
            pass

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, _async_pool.STOPPING):
            # Ctrl-C, or the cancellation of the asyncio task that holds the
            # block (Ctrl-C under asyncio.run): leave promptly, leave no
            # worker behind. Any other exception (SystemExit too) lets running
            # tasks finish, as concurrent.futures does: a task may be writing
            # a file.
            self.terminate()
            return
        try:
            self.shutdown(wait=True, cancel_futures=exc_type is not None)
        except BaseException:
            # Ctrl-C while waiting for the work to finish.
            self.terminate()
            raise

    async def __aenter__(self) -> Pool:
        return await _async_pool.enter(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await _async_pool.leave(self, exc_type)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<nestpool.Pool {self._name} {state} {self._backend.describe()}>"


def _raise_closed() -> Iterator[Any]:
    raise PoolClosedError(SHUTDOWN_MESSAGE)
    yield  # a generator: the error comes at the first next(), as a task's would
