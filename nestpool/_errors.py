"""The exceptions nestpool raises, and nothing else.

Our exception hierarchy::

    NestpoolError(Exception)
    ├── WorkerDiedError(NestpoolError, BrokenProcessPool)
    ├── TaskTimeoutError(NestpoolError, TimeoutError)   (+ cf.TimeoutError on 3.10)
    ├── TaskPicklingError(NestpoolError, pickle.PicklingError)
    ├── RemoteTaskError(NestpoolError)
    ├── InitializerError(NestpoolError, BrokenProcessPool)
    └── PoolClosedError(NestpoolError, RuntimeError)

Each class also subclasses what users of ``concurrent.futures`` already catch, so
existing ``except`` clauses keep working. Every error crosses process boundaries:
state lives in ``args`` plus keyword attributes restored by the default
``BaseException.__reduce__`` (which pickles ``__dict__``), and a test round-trips
each one. This module imports nothing from nestpool.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import signal as _signal
import sys
from concurrent.futures.process import BrokenProcessPool

__all__ = [
    "InitializerError",
    "NestpoolError",
    "PoolClosedError",
    "RemoteTaskError",
    "TaskPicklingError",
    "TaskTimeoutError",
    "WorkerDiedError",
]


class NestpoolError(Exception):
    """Base class of every error nestpool raises itself.

    Catch it to handle any nestpool failure at once; a task's own exceptions are
    never wrapped in it (they arrive as themselves).

    Example:
        >>> try:
        ...     future.result()
        ... except NestpoolError as exc:
        ...     log.warning("nestpool failed the task: %s", exc)
    """


class WorkerDiedError(NestpoolError, BrokenProcessPool):
    """The worker process running the task died, or was stopped, before it finished.

    Only the tasks that worker was running fail with it; the worker is replaced and
    the pool goes on. It is a ``concurrent.futures.process.BrokenProcessPool``, so
    code written for ``ProcessPoolExecutor`` still catches it.

    Attributes:
        task_name: the name of the task that was running.
        task_id: the pool-local id of the task.
        pid: the worker's process id.
        exitcode: the worker's exit code (negative: killed by that signal).
        signal: the name of the signal that killed it (``"SIGKILL"``), or None.

    Example:
        >>> try:
        ...     crunch(batch).result()
        ... except WorkerDiedError as exc:
        ...     print(exc.signal)   # 'SIGKILL' when the OOM killer struck
    """

    def __init__(
        self,
        message: str,
        *,
        task_name: str | None = None,
        task_id: int | None = None,
        pid: int | None = None,
        exitcode: int | None = None,
    ) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.task_id = task_id
        self.pid = pid
        self.exitcode = exitcode

    @property
    def signal(self) -> str | None:
        """The name of the signal that ended the worker, or None if it exited.

        Example:
            >>> WorkerDiedError("lost", exitcode=-9).signal
            'SIGKILL'
        """
        return signal_name(self.exitcode)


if sys.version_info >= (3, 11):  # cf.TimeoutError is the builtin TimeoutError

    class _TimeoutBase(TimeoutError):
        pass

else:  # pragma: no cover - Python 3.10, where cf.TimeoutError is a distinct class

    class _TimeoutBase(TimeoutError, concurrent.futures.TimeoutError):
        pass


class TaskTimeoutError(NestpoolError, _TimeoutBase):
    """A process task ran past its ``timeout=``; its worker was stopped and replaced.

    It is a ``TimeoutError`` (and on Python 3.10 also a
    ``concurrent.futures.TimeoutError``).

    Attributes:
        task_name: the task that timed out.
        task_id: the pool-local id of the task.
        timeout: the limit in seconds.

    Example:
        >>> @process_task(timeout=5.0)
        ... def parse(page: bytes) -> Tree: ...
        >>> try:
        ...     parse(page).result()
        ... except TimeoutError:
        ...     ...
    """

    def __init__(
        self,
        message: str,
        *,
        task_name: str | None = None,
        task_id: int | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.task_id = task_id
        self.timeout = timeout

    def __str__(self) -> str:
        # OSError's __str__ would format (errno, strerror) pairs; keep the message.
        return str(self.args[0]) if self.args else ""


class TaskPicklingError(NestpoolError, pickle.PicklingError):
    """An argument, result or exception could not cross the process boundary.

    It fails that one task; the pool goes on. The message names the task, the
    direction (``"argument"``, ``"result"``, ...) and the cause, which is also
    chained as ``__cause__`` where it could travel. It is a
    ``pickle.PicklingError``.

    Attributes:
        task_name: the task whose data failed.
        direction: what failed: ``"argument"``, ``"argument (unpickling in the
            worker)"``, ``"result"``, ``"result (unpickling in the parent)"``,
            ``"function"`` or ``"initializer"``.

    Example:
        >>> f = crunch(threading.Lock())        # a lock cannot be pickled
        >>> f.exception()
        TaskPicklingError("task 'crunch': the argument could not be pickled: ...")
    """

    def __init__(
        self,
        message: str,
        *,
        task_name: str | None = None,
        direction: str | None = None,
    ) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.direction = direction


class RemoteTaskError(NestpoolError):
    """A worker-side exception that could not itself be pickled.

    It carries what could be saved of the original: its type name, its message
    and the worker-side traceback text (also printed as this error's cause).

    Attributes:
        type_name: qualified name of the original exception's type.
        message: ``str()`` of the original exception.
        traceback_text: the formatted worker-side traceback.

    Example:
        >>> try:
        ...     f.result()
        ... except RemoteTaskError as exc:
        ...     print(exc.type_name, exc.message)
    """

    def __init__(
        self,
        message: str,
        *,
        type_name: str = "",
        original_message: str = "",
        traceback_text: str = "",
    ) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = original_message
        self.traceback_text = traceback_text


class InitializerError(NestpoolError, BrokenProcessPool):
    """The pool's ``initializer`` raised in a worker; the pool is broken.

    This is the one fault that makes a pool unusable: a worker that cannot start
    would fail again on every respawn, so the pool stops starting workers and
    fails its pending and new process tasks with this error. It is a
    ``concurrent.futures.process.BrokenProcessPool`` (so a
    ``concurrent.futures.BrokenExecutor``), as ``ProcessPoolExecutor`` raises
    for a failed initializer. The worker-side traceback text is in
    ``traceback_text`` and printed as the cause.

    Example:
        >>> with Pool(initializer=connect_db) as pool:
        ...     crunch(1).result()      # raises InitializerError if connect_db fails
    """

    def __init__(self, message: str, *, traceback_text: str = "") -> None:
        super().__init__(message)
        self.traceback_text = traceback_text


class PoolClosedError(NestpoolError, RuntimeError):
    """Work was submitted to a pool that was shut down.

    The message is the standard library's own: ``cannot schedule new futures
    after shutdown``, and it is a ``RuntimeError`` as there. Once the
    interpreter has begun to exit, work given to a pool (a decorated call
    routed to one included) gets what the standard library raises then: a
    plain ``RuntimeError('cannot schedule new futures after interpreter
    shutdown')``.

    Example:
        >>> pool.shutdown()
        >>> pool.submit(print, 1)
        Traceback (most recent call last):
        PoolClosedError: cannot schedule new futures after shutdown
    """


def signal_name(exitcode: int | None) -> str | None:
    """Return ``"SIGKILL"`` for an exit code of -9, None for a normal exit."""
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return _signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def describe_exit(exitcode: int | None) -> str:
    """Describe how a process ended, loky style: 'killed by SIGKILL', 'exited with
    exit code 3'."""
    if exitcode is None:
        return "ended with an unknown status"
    name = signal_name(exitcode)
    if name is not None:
        return f"killed by {name}"
    return f"exited with exit code {exitcode}"
