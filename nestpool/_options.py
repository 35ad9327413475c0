"""``Pool``'s options: checked, and resolved into what the backends take.

What it owns: every check ``Pool()`` makes of its arguments, with the
standard library's messages where ``ProcessPoolExecutor`` has one; the two
names of one option (``processes``/``max_workers``, ``start_method``/
``mp_context``); the default start method and worker count; and the
initializer as each worker gets it (dry-run pickled here, so that one that
cannot travel fails the constructor, not a worker).

It must never start a process or hold a pool's state: it returns a record.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
from collections.abc import Callable
from typing import Any

from ._errors import TaskPicklingError
from ._reach import needs_by_value
from ._serialize import CallableByValue, pickling_error
from ._worker_start import ForkContextError, InitCall

__all__ = ["START_METHODS", "PoolOptions", "default_start_method", "usable_cpu_count"]

START_METHODS = ("fork", "forkserver", "spawn")


class PoolOptions:
    """The options of one ``Pool``, checked and resolved."""

    __slots__ = (
        "context",
        "initializer",
        "max_tasks_per_child",
        "processes",
        "start_method",
        "tasks_per_process",
        "threads",
    )

    def __init__(
        self,
        *,
        processes: int,
        threads: int | None,
        tasks_per_process: int,
        start_method: str,
        context: multiprocessing.context.BaseContext,
        initializer: InitCall | None,
        max_tasks_per_child: int | None,
    ) -> None:
        #: worker processes (0: inline)
        self.processes = processes
        self.threads = threads
        self.tasks_per_process = tasks_per_process
        self.start_method = start_method
        #: what starts the workers: the caller's mp_context, or the start method's
        self.context = context
        self.initializer = initializer
        self.max_tasks_per_child = max_tasks_per_child

    def describe(self) -> str:
        """The options in a pool's repr."""
        return (
            f"processes={self.processes} threads={self.threads} "
            f"tasks_per_process={self.tasks_per_process} start_method={self.start_method!r}"
        )

    @classmethod
    def resolve(
        cls,
        processes: int | None,
        threads: int | None,
        *,
        tasks_per_process: int,
        start_method: str | None,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        max_tasks_per_child: int | None,
        max_workers: int | None,
        mp_context: multiprocessing.context.BaseContext | None,
        local: bool,
    ) -> PoolOptions:
        """Check ``Pool()``'s arguments and resolve them (see ``Pool``'s
        Args and Raises). ``local`` is False when a Dask client runs the
        tasks: then the options the cluster decides must be left out."""
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
        if not local:
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
        # ProcessPoolExecutor's checks and messages
        _check_count(
            "max_tasks_per_child",
            max_tasks_per_child,
            minimum=1,
            too_small="max_tasks_per_child must be >= 1",
            not_int="max_tasks_per_child must be an integer",
        )
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
            raise TypeError("initializer must be a callable")  # the standard words

        init_call: InitCall | None = None
        if initializer is not None:
            try:
                init_call = _init_call(initializer, tuple(initargs), start_method)
            except _NeedsFork:
                # Objects of a fork context in initargs (multiprocessing.Queue()
                # of the default context on Linux before 3.14) can only reach
                # forked workers: ProcessPoolExecutor's default context forks.
                if not defaulted:
                    raise
                start_method = "fork"
                init_call = _init_call(initializer, tuple(initargs), start_method)
        return cls(
            processes=usable_cpu_count() if processes is None else processes,
            threads=threads,
            tasks_per_process=tasks_per_process,
            start_method=start_method,
            context=mp_context or multiprocessing.get_context(start_method),
            initializer=init_call,
            max_tasks_per_child=max_tasks_per_child,
        )


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
    not_int: str | None = None,
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(not_int or f"{name} must be an int or None, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(too_small or f"{name} must be >= {minimum}, got {value}")


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
