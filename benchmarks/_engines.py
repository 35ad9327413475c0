"""The engines compared: nestpool and its baselines, behind one small interface.

An engine is a context manager (entering starts its processes, leaving stops
them) with ``run(fn, jobs)``: call ``fn(*job)`` for every job, in parallel,
and return the values in order. Start-up is never timed: each workload warms
an engine up before its timed repeats.

``style`` says which version of a workload's function the engine runs:
``"nestpool"`` (decorated tasks), ``"nestpool-async"`` (decorated tasks whose
subtasks are async), ``"naive"`` (a new thread pool per task),
``"persistent"`` (a per-worker thread pool made once) or ``"aiomultiprocess"``
(a coroutine per task).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from benchmarks import tasks
from nestpool import Pool

Job = tuple[Any, ...]


class Engine:
    """Base: a label, a style, and the processes it runs on."""

    style = "persistent"

    def __init__(self, label: str, processes: int) -> None:
        self.label = label
        self.processes = processes

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, fn: Callable[..., Any], jobs: list[Job]) -> list[Any]:
        raise NotImplementedError


class Nestpool(Engine):
    """``Pool(processes, threads, tasks_per_process)``; jobs go through ``task.map``.
    ``style="nestpool-async"``: the workload's task whose subtasks are async."""

    style = "nestpool"

    def __init__(
        self,
        label: str,
        processes: int,
        *,
        threads: int | None = None,
        tasks_per_process: int = 1,
        start_method: str | None = None,
        style: str = "nestpool",
    ) -> None:
        super().__init__(label, processes)
        self.style = style
        self.threads = threads
        self.tasks_per_process = tasks_per_process
        self.start_method = start_method
        self.pool: Pool | None = None

    def __enter__(self) -> Nestpool:
        self.pool = Pool(
            self.processes,
            self.threads,
            tasks_per_process=self.tasks_per_process,
            start_method=self.start_method,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.pool is not None
        self.pool.shutdown(wait=True)

    def run(self, fn: Callable[..., Any], jobs: list[Job]) -> list[Any]:
        return list(fn.map(*zip(*jobs, strict=True)))  # type: ignore[attr-defined]


class Stdlib(Engine):
    """``ProcessPoolExecutor``; ``persistent`` makes a per-worker thread pool in
    the initializer; ``naive`` does not (each task makes its own)."""

    def __init__(
        self, label: str, processes: int, *, style: str, threads: int, start_method: str
    ) -> None:
        super().__init__(label, processes)
        self.style = style
        self.threads = threads
        self.start_method = start_method
        self.executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Stdlib:
        options: dict[str, Any] = {}
        if self.style == "persistent":
            options = {"initializer": tasks.init_thread_pool, "initargs": (self.threads,)}
        self.executor = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context(self.start_method),
            **options,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.executor is not None
        self.executor.shutdown(wait=True)

    def run(self, fn: Callable[..., Any], jobs: list[Job]) -> list[Any]:
        assert self.executor is not None
        return list(self.executor.map(fn, *zip(*jobs, strict=True)))


class Loky(Engine):
    """loky's reusable executor, the per-worker thread pool made in its initializer."""

    def __init__(self, label: str, processes: int, *, threads: int) -> None:
        super().__init__(label, processes)
        self.threads = threads
        self.executor: Any = None

    def __enter__(self) -> Loky:
        import loky

        self.executor = loky.get_reusable_executor(
            max_workers=self.processes,
            initializer=tasks.init_thread_pool,
            initargs=(self.threads,),
            reuse=False,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, kill_workers=True)

    def run(self, fn: Callable[..., Any], jobs: list[Job]) -> list[Any]:
        return list(self.executor.map(fn, *zip(*jobs, strict=True)))


class Mpire(Engine):
    """mpire's ``WorkerPool``; the thread pool is made by the task on first use
    in each worker. Not its default start method (fork): this runner has
    threads, and a fork of it can hang a worker on a lock another thread held
    at the fork."""

    def __init__(self, label: str, processes: int, *, start_method: str) -> None:
        super().__init__(label, processes)
        self.start_method = start_method
        self.pool: Any = None

    def __enter__(self) -> Mpire:
        from mpire import WorkerPool

        self.pool = WorkerPool(
            n_jobs=self.processes, keep_alive=True, start_method=self.start_method
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.terminate()

    def run(self, fn: Callable[..., Any], jobs: list[Job]) -> list[Any]:
        # mpire unpacks a tuple into the arguments; chunk_size 1: as the others.
        return list(self.pool.map(fn, jobs, chunk_size=1, progress_bar=False))


class Joblib(Engine):
    """joblib's ``Parallel`` (loky backend, its automatic batching); the thread
    pool is made by the task on first use in each worker."""

    def __init__(self, label: str, processes: int) -> None:
        super().__init__(label, processes)
        self.parallel: Any = None

    def __enter__(self) -> Joblib:
        from joblib import Parallel

        self.parallel = Parallel(n_jobs=self.processes, backend="loky")
        self.parallel.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.parallel.__exit__(None, None, None)
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)

    def run(self, fn: Callable[..., Any], jobs: list[Job]) -> list[Any]:
        from joblib import delayed

        return list(self.parallel(delayed(fn)(*job) for job in jobs))


class Aiomultiprocess(Engine):
    """aiomultiprocess's ``Pool``: an event loop in every worker process, up to
    ``childconcurrency`` coroutines (process tasks) at once on each; jobs go
    through ``starmap``. Its pool lives on an event loop of the caller's, made
    here and run by ``run`` (aiomultiprocess's pool must be made in a running
    loop); its start method is set for the whole process (aiomultiprocess has
    one, global)."""

    style = "aiomultiprocess"

    def __init__(
        self, label: str, processes: int, *, childconcurrency: int, start_method: str
    ) -> None:
        super().__init__(label, processes)
        self.childconcurrency = childconcurrency
        self.start_method = start_method
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: Any = None

    def __enter__(self) -> Aiomultiprocess:
        import aiomultiprocess

        aiomultiprocess.set_start_method(self.start_method)

        async def open_pool() -> Any:
            return aiomultiprocess.Pool(self.processes, childconcurrency=self.childconcurrency)

        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(open_pool())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None

        async def close_pool() -> None:
            self.pool.close()
            await self.pool.join()

        self.loop.run_until_complete(close_pool())
        self.loop.close()

    def run(self, fn: Callable[..., Any], jobs: list[Job]) -> list[Any]:
        assert self.loop is not None

        async def starmap() -> list[Any]:
            return list(await self.pool.starmap(fn, jobs))

        return self.loop.run_until_complete(starmap())
