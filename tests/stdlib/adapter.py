"""Point CPython's ``test.test_concurrent_futures`` process-pool tests at ``Pool``.

What it does, and nothing more:

- ``executor_type()`` is ``Pool`` itself once ``Pool`` takes
  ``ProcessPoolExecutor``'s ``max_workers=`` and ``mp_context=``; until then
  ``PoolAdapter``, a subclass that only renames them (``max_workers`` ->
  ``processes``, ``mp_context`` -> ``start_method=ctx.get_start_method()``)
  and passes ``initializer``, ``initargs`` and ``max_tasks_per_child`` through.
- ``install()`` sets it as ``executor_type`` of the standard library's three
  process-pool mixins (fork, forkserver, spawn), so that every test class
  built from them runs on it; and lets the tests that start a fresh
  interpreter (``assert_python_ok``) import it as
  ``concurrent.futures.<its name>``, as their scripts do.
- ``SKIPS``: tests that cannot apply to ``Pool``: they read
  ``ProcessPoolExecutor``'s private attributes, construct
  ``ProcessPoolExecutor`` itself, or inject faults into its private threads.
  Each has its reason, and runs as a skip with that reason.
- ``EXPECTED_FAILURES``: tests that fail because ``Pool`` differs by design
  (docs/migrating.md says how and why), and tests that fail on a nestpool bug
  (``bug=True``) until it is fixed. Each says how it fails: a regular
  expression its traceback must contain, or ``HANGS``. Such a test runs under
  ``unittest.expectedFailure``; ``run.py`` fails the run if one passes or
  fails another way, so the list stays exact.

A key is a test method name (every class, every start method),
``"name[start method]"`` or ``"name[mixin]"`` (``test_initializer[FailingInitializer]``
for ``ProcessPool<Method>FailingInitializerTest``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import multiprocessing.context
import os
import sys
import types
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nestpool import Pool

START_METHODS = ("fork", "forkserver", "spawn")

#: The modules of ``test.test_concurrent_futures`` that build process-pool
#: test classes (``executor.py``'s tests come in through ``test_process_pool``;
#: ``test_future`` and ``test_thread_pool`` have none).
MODULES = (
    "test_process_pool",
    "test_shutdown",
    "test_wait",
    "test_as_completed",
    "test_init",
    "test_deadlock",
)

T = TypeVar("T")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_PRIVATE = "reads ProcessPoolExecutor's private {}, which Pool does not have"
_OWN_PPE = "constructs ProcessPoolExecutor itself (not executor_type) and "

SKIPS: dict[str, str] = {
    # test_process_pool (ProcessPoolExecutorTest)
    "test_killed_child": _PRIVATE.format("_processes (to pick a worker to kill)")
    + "; Pool differs here by design: one death fails only that worker's tasks and "
    "the pool goes on (tests/test_faults.py)",
    "test_saturation": _PRIVATE.format("_processes and _max_workers"),
    "test_idle_process_reuse_one": _PRIVATE.format("_processes and _max_workers"),
    "test_idle_process_reuse_multiple": _PRIVATE.format("_processes and _max_workers"),
    "test_max_tasks_per_child": _PRIVATE.format("_processes"),
    "test_max_tasks_per_child_defaults_to_spawn_context": _PRIVATE.format("_mp_context"),
    "test_python_finalization_error": "makes the start of ProcessPoolExecutor's second "
    "internal thread (its queue feeder) fail; Pool starts one thread in the parent, so "
    "the fault never reaches it (and under fork the workers inherit the mock instead)",
    # test_shutdown (ProcessPoolShutdownTest)
    "test_processes_terminate": _PRIVATE.format("_processes"),
    "test_context_manager_shutdown": _OWN_PPE + _PRIVATE.format("_processes"),
    "test_del_shutdown": _OWN_PPE
    + _PRIVATE.format("_processes, _call_queue and _executor_manager_thread"),
    "test_shutdown_no_wait": _OWN_PPE
    + _PRIVATE.format("_processes, _call_queue and _executor_manager_thread"),
    # test_init (FailingInitializerMixin, FailingInitializerResourcesTest)
    "test_initializer[FailingInitializer]": _PRIVATE.format("_broken (polled until it is set)"),
    "test_spawn[FailingInitializerResources]": "reruns FailingInitializer's test_initializer "
    "(skipped: it reads _broken) and then checks the resource tracker",
    "test_forkserver[FailingInitializerResources]": "reruns FailingInitializer's "
    "test_initializer (skipped: it reads _broken) and then checks the resource tracker",
    # test_deadlock (ExecutorDeadlockTest)
    "test_shutdown_deadlock_pickle": _PRIVATE.format(
        "_executor_manager_thread (joined at the end)"
    ),
}


#: ``Expected.match`` for a test that must hang (it is given ``HANG_SECONDS``).
HANGS = "<hangs>"
HANG_SECONDS = 10.0


@dataclass(frozen=True)
class Expected:
    """How a listed test fails: ``match`` is a regular expression that the
    failure's traceback must contain (or ``HANGS``); a test that passes, or
    fails otherwise, fails the run."""

    reason: str
    match: str
    #: a nestpool bug (a fix is due), not a difference by design
    bug: bool = False


_PICKLING = (
    "differs by design: data that cannot cross the process boundary fails its own "
    "future with TaskPicklingError (a pickle.PicklingError) and the pool goes on; "
    "ProcessPoolExecutor breaks the whole pool (BrokenProcessPool)"
)

EXPECTED_FAILURES: dict[str, Expected] = {
    # differences by design (docs/migrating.md)
    "test_traceback": Expected(
        "differs by design: the worker-side traceback is chained as nestpool's own "
        "RemoteTraceback (same .tb text, shown by sys.excepthook), not as the private "
        "concurrent.futures.process._RemoteTraceback",
        r"RemoteTraceback'> is not <class 'concurrent\.futures\.process\._RemoteTraceback'>",
    ),
    "test_cancel_futures": Expected(
        "differs by design: shutdown(cancel_futures=True) cancels every task not yet "
        "started; ProcessPoolExecutor has already moved a few into its call queue, "
        "where they cannot be cancelled, and the test counts on them",
        r"AssertionError: 0 not greater than 0",
    ),
    "test_error_at_task_unpickle": Expected(
        _PICKLING,
        r"TaskPicklingError: task 'id': an argument could not be unpickled in the "
        r"worker: UnpicklingError",
    ),
    "test_exit_at_task_unpickle": Expected(
        _PICKLING,
        r"TaskPicklingError: task 'id': an argument could not be unpickled in the "
        r"worker: SystemExit",
    ),
    "test_error_during_result_unpickle_in_result_handler": Expected(
        _PICKLING,
        r"TaskPicklingError: task '_return_instance': the result could not be "
        r"unpickled in the parent: UnpicklingError",
    ),
    "test_exit_during_result_pickle_on_worker": Expected(
        _PICKLING,
        r"TaskPicklingError: task '_return_instance': the result could not be pickled: "
        r"SystemExit",
    ),
    "test_exit_during_result_unpickle_in_result_handler": Expected(
        _PICKLING,
        r"TaskPicklingError: task '_return_instance': the result could not be "
        r"unpickled in the parent: SystemExit",
    ),
}


class PoolAdapter(Pool):
    """``Pool`` under ``ProcessPoolExecutor``'s argument names (see the module
    docstring); ``mp_context=None`` keeps ``Pool``'s default start method."""

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: multiprocessing.context.BaseContext | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
    ) -> None:
        super().__init__(
            max_workers,
            start_method=None if mp_context is None else mp_context.get_start_method(),
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_child=max_tasks_per_child,
        )


def executor_type() -> type[Pool]:
    """``Pool`` if it takes ``max_workers=`` and ``mp_context=``, else the adapter."""
    parameters = inspect.signature(Pool).parameters
    if "max_workers" in parameters and "mp_context" in parameters:
        return Pool
    return PoolAdapter


def _prelude(executor: type[Pool]) -> str:
    # The fresh interpreter runs with -I (no PYTHONPATH, no current
    # directory), so the adapter's root goes on sys.path by hand. The
    # scripts import ``concurrent.futures.<executor_type.__name__>``.
    # ``multiprocessing`` is imported because test_hang_gh83386's script uses
    # it without importing it (upstream never runs it for process pools).
    return (
        "import sys, concurrent.futures, multiprocessing\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from tests.stdlib.adapter import executor_type as _executor_type\n"
        f"concurrent.futures.{executor.__name__} = _executor_type()\n"
    )


def _with_prelude(run: Callable[..., Any], prelude: str) -> Callable[..., Any]:
    @functools.wraps(run)
    def assert_python(*args: str, **env: Any) -> Any:
        if len(args) >= 2 and args[0] == "-c":
            args = ("-c", prelude + args[1], *args[2:])
        return run(*args, **env)

    return assert_python


def _marked(test: Callable[..., Any], decorate: Callable[[Any], Any]) -> Any:
    # A new function per class: unittest.expectedFailure sets an attribute on
    # the function it is given, which the mixin shares with other classes.
    @functools.wraps(test)
    def marked(self: unittest.TestCase) -> Any:
        return test(self)

    return decorate(marked)


def _mixin_name(cls: type) -> str:
    # ProcessPoolForkFailingInitializerTest -> FailingInitializer
    name = cls.__name__.removeprefix("ProcessPool").removesuffix("Test")
    for method in ("Forkserver", "Fork", "Spawn"):
        if name.startswith(method):
            return name[len(method) :]
    return name


def _key(table: dict[str, T], cls: type, name: str, start_method: str) -> str | None:
    for key in (f"{name}[{start_method}]", f"{name}[{_mixin_name(cls)}]", name):
        if key in table:
            return key
    return None


def install(executor: type[Pool]) -> list[types.ModuleType]:
    """Run the process-pool tests on ``executor``; return the test modules."""
    from test.test_concurrent_futures import util  # type: ignore[import-not-found]

    for mixin in (
        util.ProcessPoolForkMixin,
        util.ProcessPoolForkserverMixin,
        util.ProcessPoolSpawnMixin,
    ):
        mixin.executor_type = executor
    modules = [importlib.import_module(f"test.test_concurrent_futures.{m}") for m in MODULES]
    shutdown: Any = sys.modules["test.test_concurrent_futures.test_shutdown"]
    shutdown.assert_python_ok = _with_prelude(shutdown.assert_python_ok, _prelude(executor))
    return modules


class Selection:
    """The process-pool tests of the stdlib modules for one start method, with
    the skips and expected failures applied to their classes."""

    def __init__(self, start_method: str, modules: list[types.ModuleType]) -> None:
        self.start_method = start_method
        self.suite = unittest.TestSuite()
        #: test id -> its entry in EXPECTED_FAILURES
        self.expected: dict[str, Expected] = {}
        #: ids of the tests SKIPS lists
        self.skipped: set[str] = set()
        #: keys of SKIPS and EXPECTED_FAILURES that matched a test
        self.used: set[str] = set()
        loader = unittest.TestLoader()
        for module in modules:
            for name, cls in sorted(vars(module).items()):
                if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
                    continue
                if name == "FailingInitializerResourcesTest":
                    # Reruns FailingInitializer's test for spawn and
                    # forkserver, then checks the resource tracker.
                    method = {"spawn": "test_spawn", "forkserver": "test_forkserver"}
                    if start_method in method:
                        self._mark(cls)
                        self.suite.addTest(cls(method[start_method]))
                    continue
                if start_method_of(cls) == start_method:
                    self._mark(cls)
                    self.suite.addTests(loader.loadTestsFromTestCase(cls))

    def _mark(self, cls: type) -> None:
        for name in unittest.TestLoader().getTestCaseNames(cls):
            test = getattr(cls, name)
            test_id = f"{cls.__module__}.{cls.__qualname__}.{name}"
            key = _key(SKIPS, cls, name, self.start_method)
            if key is not None:
                self.used.add(key)
                self.skipped.add(test_id)
                setattr(cls, name, _marked(test, unittest.skip(SKIPS[key])))
                continue
            key = _key(EXPECTED_FAILURES, cls, name, self.start_method)
            if key is not None:
                self.used.add(key)
                self.expected[test_id] = EXPECTED_FAILURES[key]
                setattr(cls, name, _marked(test, unittest.expectedFailure))


def start_method_of(cls: type) -> str | None:
    """The start method a stdlib test class runs under, None if not a process pool."""
    ctx = getattr(cls, "ctx", None)
    return ctx if ctx in START_METHODS and hasattr(cls, "executor_type") else None


__all__ = [
    "EXPECTED_FAILURES",
    "HANGS",
    "HANG_SECONDS",
    "SKIPS",
    "START_METHODS",
    "Expected",
    "PoolAdapter",
    "Selection",
    "executor_type",
    "install",
]
