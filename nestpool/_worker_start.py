"""What a worker process needs before it takes calls: its configuration, the
pool's initializer with its arguments (and their dry run in the parent), and
the lines of defence that end it with its parent.

What it owns: ``WorkerConfig`` and ``InitCall`` (made in the parent, handed
to ``multiprocessing.Process``), ``die_with_parent`` and
``forget_forkserver`` (called first thing in the worker). It must never
import parent-side modules (workers load it), and never take a lock that a
forked child could inherit held.
"""

from __future__ import annotations

import io
import multiprocessing.context
import multiprocessing.synchronize
import os
import pickle
import signal
import sys
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = [
    "ForkContextError",
    "InitCall",
    "WorkerConfig",
    "die_with_parent",
    "flush_std_streams",
    "forget_forkserver",
]


class WorkerConfig:
    """What a worker needs to start (a ``multiprocessing.Process`` argument)."""

    __slots__ = ("index", "tasks_per_process", "threads")

    def __init__(self, index: int, threads: int | None, tasks_per_process: int) -> None:
        self.index = index
        self.threads = threads
        self.tasks_per_process = tasks_per_process

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.index, self.threads, self.tasks_per_process)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.index, self.threads, self.tasks_per_process = state


class InitCall:
    """The pool's initializer and its arguments, given to each worker as
    ``multiprocessing.Process`` arguments, the way ``ProcessPoolExecutor``
    passes them: inherited under fork, pickled by multiprocessing as it starts
    the process under spawn and forkserver (the only moment it lets a
    ``Queue`` be pickled), in the same pickle as the process's other
    arguments, so shared memory they share is handed over once.
    """

    __slots__ = ("initargs", "initializer")

    def __init__(self, initializer: Callable[..., object], initargs: tuple[Any, ...]) -> None:
        self.initializer = initializer
        self.initargs = initargs

    def check(self) -> None:
        """Pickle it once now, as multiprocessing will when it starts a worker
        under spawn or forkserver, so that an initializer or an argument that
        cannot travel fails here, where the caller sees it.

        Raises:
            Exception: what pickling raised.
        """
        context = multiprocessing.context
        set_spawning = getattr(context, "set_spawning_popen")  # noqa: B009 - not in typeshed
        set_spawning(_DryRunStart())
        try:
            _DryRunPickler(io.BytesIO(), pickle.HIGHEST_PROTOCOL).dump(
                (self.initializer, self.initargs)
            )
        finally:
            set_spawning(None)


class ForkContextError(RuntimeError):
    """An initializer argument was made by a ``fork`` context (a
    ``multiprocessing.Queue()`` of the default context on Linux before Python
    3.14): its semaphores have no name, so only forked workers can use it."""


class _DryRunPickler(ForkingPickler):
    def reducer_override(self, obj: object) -> Any:
        if (
            isinstance(obj, multiprocessing.synchronize.SemLock)
            and sys.platform != "win32"
            and getattr(getattr(obj, "_semlock", None), "name", "") is None
        ):
            raise ForkContextError(
                f"a {type(obj).__name__} made by a 'fork' context (as multiprocessing's "
                "default context is on Linux before Python 3.14) can only reach forked "
                "workers: make it with multiprocessing.get_context(start_method)"
            )
        return NotImplemented


class _DryRunStart:
    """Stands in for the process being started while ``InitCall.check`` pickles:
    file descriptors are named, not handed over."""

    @staticmethod
    def DupFd(fd: int) -> int:
        return fd

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd


_PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this worker when the thread that started it ends.

    A second line of defence behind the channel watch: while a task holds the
    GIL in C code (a regex that backtracks for ever, an extension's loop), the
    main thread cannot run to notice the end of the channel, and the worker
    would outlive its parent. The thread that started the worker is
    the dispatcher's, which ends only after every worker it started, or the
    forkserver's, which ends with the main process. Linux only.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # pragma: no cover - no libc prctl: the channel watch remains
        pass


def forget_forkserver() -> None:
    """Close this worker's copy of the forkserver's 'alive' pipe.

    The forkserver hands it to every process it forks and exits when all
    copies are closed; the main process holds one. While a worker holds one
    too, a dead main process leaves the forkserver running, and a worker stuck
    in C code (see ``die_with_parent``: its parent is the forkserver) with it.
    A task that uses the forkserver itself starts a fresh one of its own.
    """
    module = sys.modules.get("multiprocessing.forkserver")
    server = getattr(module, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if server is None or fd is None:
        return
    try:
        os.close(fd)
    except OSError:
        pass
    server._forkserver_alive_fd = None
    server._forkserver_address = None
    # A forked worker also inherits the parent's server pid, which it cannot
    # wait for (not its child): forget it too, or the task's start fails.
    server._forkserver_pid = None


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
