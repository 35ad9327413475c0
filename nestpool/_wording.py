"""The words of the errors the process engine puts in futures: one place to
read and review them.

Each function builds one error from the facts the caller has (the task, the
worker's pid, its exit code) and says what happened, the likely cause and what
to do. What it owns: wording only; it never decides *when* an error is raised,
and never touches a task, a worker or a future.
"""

from __future__ import annotations

import copy

from ._errors import (
    InitializerError,
    NestpoolError,
    PoolClosedError,
    TaskTimeoutError,
    WorkerDiedError,
    describe_exit,
    signal_name,
)
from ._records import Task

__all__ = [
    "TERMINATED",
    "after_tries",
    "copy_initializer_error",
    "death_error",
    "dispatcher_crashed",
    "not_started",
    "pool_closed",
    "start_failed",
    "startup_failure",
    "stop_reason",
    "timeout_error",
    "timeout_stop_reason",
]

#: why every worker is stopped when the pool is terminated
TERMINATED = "the pool was terminated (Ctrl-C or an error)"


def death_error(
    task: Task,
    pid: int,
    exitcode: int | None,
    kill_reason: str | None,
    running: int,
    terminating: bool,
) -> WorkerDiedError:
    """The error of a task whose worker died while running it.

    Args:
        running: how many tasks that worker was running (its siblings died too).
        kill_reason: why the pool stopped the worker, if it did.
    """
    reason = kill_reason or _death_hint(exitcode)
    if terminating:
        others = ""
    elif running > 1:
        # tasks_per_process > 1: the siblings went down with it; say so.
        plural = "s" if running > 2 else ""
        others = (
            f" The {running - 1} other task{plural} running in that worker failed "
            "with it; tasks in other workers were not affected."
        )
    elif kill_reason is not None:
        # Stopped for another task's timeout: that one was affected too.
        others = " Tasks in other workers were not affected."
    else:
        others = " Other tasks were not affected."
    return WorkerDiedError(
        f"task {task.name!r} (id {task.id}) lost its worker: pid {pid} "
        f"{describe_exit(exitcode)}; {reason}.{others}",
        task_name=task.name,
        task_id=task.id,
        pid=pid,
        exitcode=exitcode,
    )


def after_tries(error: BaseException, tries: int, retries: int) -> BaseException:
    """``error`` (a death or a timeout) as the last of ``tries`` tries of a
    task with ``retries=``: a copy whose message says so. Unchanged without
    retries."""
    if not retries:
        return error
    plural = "y" if retries == 1 else "ies"
    copied = copy.copy(error)
    copied.args = (
        f"{error} Failed after {tries} tries ({retries} retr{plural}): "
        "every try lost its worker or ran out of time.",
    )
    return copied


def _death_hint(exitcode: int | None) -> str:
    name = signal_name(exitcode)
    if name == "SIGKILL":
        return "often the out-of-memory killer (or kill -9)"
    if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"):
        return "a crash in native code (an extension module, ctypes)"
    if name is not None:
        return "it was sent that signal"
    return "the task (or a library it called) ended the process, e.g. with os._exit()"


def timeout_error(task: Task, pid: int) -> TaskTimeoutError:
    """The error of a task that ran past its ``timeout=`` in worker ``pid``."""
    return TaskTimeoutError(
        f"task {task.name!r} (id {task.id}) ran past its timeout of "
        f"{task.timeout}s; its worker (pid {pid}) was stopped and replaced",
        task_name=task.name,
        task_id=task.id,
        timeout=task.timeout,
    )


def timeout_stop_reason(task: Task) -> str:
    """Why a worker was stopped, for the other tasks it was running."""
    return (
        f"it was stopped because task {task.name!r} (id {task.id}) in the same "
        f"worker ran past its timeout of {task.timeout}s"
    )


def stop_reason(task: Task) -> str:
    """Why a worker was stopped when its user stopped one of its tasks."""
    return (
        f"task {task.name!r} (id {task.id}) in it was stopped by its user "
        "(nestpool.stop, or cancel() with stop_on_cancel)"
    )


def startup_failure(
    deaths: int, booted: bool, has_initializer: bool, exitcode: int | None
) -> InitializerError:
    """``deaths`` workers in a row died before they were ready: the pool stops
    starting them.

    Args:
        booted: the last worker's own code ran (so the initializer did).
        exitcode: how the last one ended.
    """
    if booted and has_initializer:
        where = "in the pool's initializer"
        hint = "Check the initializer (run it once in the parent to see it fail)."
    else:
        where = "while starting"
        hint = (
            "Check that the main module can be imported by the workers "
            "(guard the entry point with `if __name__ == '__main__':`)."
        )
    return InitializerError(
        f"{deaths} worker processes in a row died {where}, before they "
        f"were ready (the last {describe_exit(exitcode)}); the pool stops starting "
        f"workers. {hint}"
    )


def start_failed(exc: BaseException, start_method: str) -> InitializerError:
    """A worker process could not be started at all (``exc`` as its cause)."""
    error = InitializerError(
        f"a worker process could not be started: {type(exc).__name__}: {exc} "
        "(the pool's initializer and initargs must be picklable under the "
        f"{start_method!r} start method; the pool stops starting workers)"
    )
    error.__cause__ = exc
    return error


def copy_initializer_error(error: InitializerError) -> InitializerError:
    """A fresh copy of the error that broke the pool, for one more future."""
    copy = InitializerError(str(error), traceback_text=error.traceback_text)
    copy.__cause__ = error.__cause__
    return copy


def pool_closed() -> PoolClosedError:
    """Work handed to a pool that shut down."""
    return PoolClosedError("cannot schedule new futures after shutdown")


def not_started() -> NestpoolError:
    """A pending task that the pool's shutdown could not cancel."""
    return NestpoolError("task was not started: pool shut down")


def dispatcher_crashed(exc: BaseException) -> NestpoolError:
    """The dispatcher thread itself failed with ``exc``."""
    if isinstance(exc, RuntimeError) and "bootstrapping phase" in str(exc):
        # A worker being started ran the main module's unguarded code.
        return NestpoolError(
            "nestpool could not start a worker process while the main module "
            "was being imported by another one: guard the program's entry point "
            "with `if __name__ == '__main__':`."
        )
    return NestpoolError(
        f"nestpool's dispatcher failed: {exc!r}. This should never happen; "
        "please file a bug with the traceback logged on the 'nestpool' logger."
    )
