"""Data that cannot cross the process boundary, in each direction and on each
side, for single calls and for the items of a map chunk.

What must hold (docs/faults.md, docs/pickling.md): an argument or result that
cannot be pickled fails that one future with a clear error naming the task and
the cause, and the pool goes on; a worker-side exception that cannot be
pickled arrives as a ``RemoteTaskError`` carrying its type name, message and
traceback text. The objects come from one table of things that fail at pickle
or at unpickle, on either side.
"""

from __future__ import annotations

import pickle
import sys
import threading
import types
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from nestpool import (
    InitializerError,
    NestpoolError,
    Pool,
    PoolClosedError,
    RemoteTaskError,
    TaskPicklingError,
    TaskTimeoutError,
    WorkerDiedError,
    process_task,
)
from nestpool._records import Task
from nestpool._serialize import RemoteTraceback, as_outcomes, dumps
from tests import fault_tasks as ft
from tests.helpers import local_engine

pytestmark = pytest.mark.timeout(60)

# A module that exists only in this (the parent) process: pickled by reference,
# it cannot be imported by a spawned or forkserver worker (a fork inherits it).
_PARENT_ONLY = types.ModuleType("nestpool_parent_only")
exec(
    "class ParentOnly:\n"
    "    def __init__(self, value):\n"
    "        self.value = value\n"
    "def parent_only_square(x):\n"
    "    return x * x\n",
    _PARENT_ONLY.__dict__,
)
sys.modules[_PARENT_ONLY.__name__] = _PARENT_ONLY


def _local_class_instance(with_lock: bool) -> object:
    class Local:
        def __init__(self) -> None:
            self.lock = threading.Lock() if with_lock else None

        def __repr__(self) -> str:
            return "Local()"

    return Local()


# ------------------------------------------------------------------- the table

#: an argument that fails on the way to the worker:
#: (make it, direction, words the message must contain)
ARGUMENTS: dict[str, tuple[Callable[[], object], str, str]] = {
    "lock": (threading.Lock, "argument", "cannot pickle '_thread.lock' object"),
    "generator": (lambda: (i for i in range(3)), "argument", "cannot pickle 'generator' object"),
    "holds a lock": (ft.HoldsLock, "argument", "'_thread.lock'"),
    "local class holding a lock": (
        lambda: _local_class_instance(True),
        "argument",
        "'_thread.lock'",
    ),
    "reduce raises on load": (
        ft.FailsToUnpickle,
        "argument (unpickling in the worker)",
        "ValueError: cannot rebuild FailsToUnpickle",
    ),
    "__setstate__ raises": (
        ft.SetstateRaises,
        "argument (unpickling in the worker)",
        "RuntimeError: SetstateRaises refuses to be rebuilt",
    ),
}

#: a result that fails on the way back: make_result(kind) -> (direction, words)
RESULTS: dict[str, tuple[str, str]] = {
    "lock": ("result", "cannot pickle '_thread.lock' object"),
    "generator": ("result", "cannot pickle 'generator' object"),
    "holds_lock": ("result", "'_thread.lock'"),
    "fails_to_unpickle": (
        "result (unpickling in the parent)",
        "ValueError: cannot rebuild FailsToUnpickle",
    ),
    "setstate_raises": (
        "result (unpickling in the parent)",
        "RuntimeError: SetstateRaises refuses to be rebuilt",
    ),
    "worker_only": (
        "result (unpickling in the parent)",
        "LookupError: WorkerOnly cannot be rebuilt outside a worker",
    ),
}


def _check_pickling_error(error: BaseException, name: str, direction: str, words: str) -> None:
    assert isinstance(error, TaskPicklingError), repr(error)
    assert isinstance(error, pickle.PicklingError)
    assert isinstance(error, NestpoolError)
    assert error.task_name == name
    assert error.direction == direction
    message = str(error)
    assert message.startswith(f"task {name!r}: "), message
    assert words in message, message
    assert error.__cause__ is not None


@pytest.mark.parametrize("case", sorted(ARGUMENTS))
def test_an_argument_that_cannot_cross_fails_that_future(start_method: str, case: str) -> None:
    make, direction, words = ARGUMENTS[case]
    with Pool(processes=1, start_method=start_method) as pool:
        future = ft.identity(make())  # the call itself never raises
        error = future.exception(timeout=30)
        assert error is not None
        _check_pickling_error(error, "identity", direction, words)
        if direction == "argument":
            # Failed here, before any worker was involved: none was started.
            assert future.done()
            assert local_engine(pool).dispatcher is None
        # The pool goes on.
        assert ft.square(6).result(timeout=30) == 36


def test_what_cloudpickle_can_send_is_not_an_error(start_method: str) -> None:
    # A local class's instance and a lambda cannot be pickled by reference, but
    # cloudpickle sends them by value: they arrive.
    with Pool(processes=1, start_method=start_method):
        assert ft.describe(_local_class_instance(False)).result(timeout=30) == "Local:Local()"
        double = ft.identity(lambda x: 2 * x).result(timeout=30)
        assert double(21) == 42


def test_a_class_the_worker_cannot_import(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method):
        future = ft.describe(_PARENT_ONLY.ParentOnly(3))
        if start_method == "fork":
            # A forked worker has the parent's modules.
            assert future.result(timeout=30).startswith("ParentOnly:")
        else:
            error = future.exception(timeout=30)
            assert error is not None
            _check_pickling_error(
                error,
                "describe",
                "argument (unpickling in the worker)",
                "No module named 'nestpool_parent_only'",
            )
        assert ft.square(3).result(timeout=30) == 9


@pytest.mark.parametrize("kind", sorted(RESULTS))
def test_a_result_that_cannot_cross_fails_that_future(start_method: str, kind: str) -> None:
    direction, words = RESULTS[kind]
    with Pool(processes=1, start_method=start_method) as pool:
        pid = ft.getpid().result(timeout=30)
        error = ft.make_result(kind).exception(timeout=30)
        assert error is not None
        _check_pickling_error(error, "make_result", direction, words)
        assert ft.make_result("ok").result(timeout=30) == "fine"
        assert pool.worker_pids() == [pid]  # nobody died for it


def test_a_function_that_cannot_be_pickled(start_method: str) -> None:
    lock = threading.Lock()

    def locked() -> bool:
        return lock.locked()

    @process_task
    def local_task() -> bool:
        return lock.locked()

    with Pool(processes=1, start_method=start_method) as pool:
        for future, name in [
            (pool.submit(lambda: lock.locked()), "<lambda>"),
            (pool.submit(locked), "locked"),
            (local_task(), "local_task"),
        ]:
            error = future.exception(timeout=30)
            assert error is not None
            assert isinstance(error, TaskPicklingError)
            assert error.direction == "function"
            assert name in str(error)
            assert "'_thread.lock'" in str(error), str(error)
        assert local_engine(pool).dispatcher is None  # no worker was involved
        assert pool.submit(ft.square.sync, 4).result(timeout=30) == 16


def test_a_function_from_a_parent_only_module_is_sent_by_value(start_method: str) -> None:
    # The module exists only in the parent (made with exec): the worker could
    # not import it, so the function travels by value, under every start method.
    with Pool(processes=1, start_method=start_method) as pool:
        future = pool.submit(_PARENT_ONLY.parent_only_square, 5)
        assert future.result(timeout=30) == 25


def test_a_function_that_fails_to_load_in_the_worker(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method) as pool:
        future = pool.submit(ft.ParentOnlyCallable(), 5)
        error = future.exception(timeout=30)
        assert error is not None
        _check_pickling_error(
            error,
            "ParentOnlyCallable",
            "function (unpickling in the worker)",
            "ParentOnlyCallable cannot be rebuilt in a worker",
        )
        assert pool.submit(pow, 2, 5).result(timeout=30) == 32


# ---------------------------------------------------------------- exceptions


@pytest.mark.parametrize(
    ("kind", "type_name", "message"),
    [
        ("locked", "tests.fault_tasks.LockedError", "the database is locked"),
        ("two_arg", "tests.fault_tasks.TwoArgError", "error 42: no quorum"),
    ],
)
def test_an_exception_that_cannot_cross_arrives_as_remote_task_error(
    start_method: str, kind: str, type_name: str, message: str
) -> None:
    with Pool(processes=1, start_method=start_method):
        error = ft.raise_kind(kind).exception(timeout=30)
        assert isinstance(error, RemoteTaskError), repr(error)
        assert error.type_name == type_name
        assert error.message == message
        assert "raise_kind" in error.traceback_text
        assert f"{type_name.rsplit('.', 1)[1]}: {message}" in error.traceback_text
        assert "task 'raise_kind' raised" in str(error)
        assert isinstance(error.__cause__, RemoteTraceback)
        assert "raise_kind" in str(error.__cause__)
        assert ft.square(2).result(timeout=30) == 4


# ----------------------------------------------------------------- bad calls


def test_wrong_arguments_fail_the_future_with_type_error(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method) as pool:
        for future in [
            ft.square(1, 2, 3),  # type: ignore[call-arg]
            ft.square(),  # type: ignore[call-arg]
            pool.submit(ft.square, y=2),  # type: ignore[call-arg]
        ]:
            error = future.exception(timeout=30)
            assert isinstance(error, TypeError), repr(error)
            assert "square()" in str(error)
            assert isinstance(error.__cause__, RemoteTraceback)
            assert "TypeError" in str(error.__cause__)
        assert ft.square(3).result(timeout=30) == 9


# ---------------------------------------------------------------- map chunks


def _run_chunk(pool: Pool, task: Any, items: list[tuple[Any, ...]]) -> list[tuple[bool, Any]]:
    """Run ``items`` as one chunk of ``task`` and return every item's outcome."""
    dispatcher = local_engine(pool).get_dispatcher()
    future: Future[Any] = Future()
    payload = task._self_options.get_payload()
    # A chunk travels as its items' positional-argument tuples.
    dispatcher.submit(Task(10**9, task.__qualname__, payload, dumps(items), future, None, items))
    outcomes: list[tuple[bool, Any]] = as_outcomes(future.result(timeout=30))
    return outcomes


def test_the_bad_argument_of_a_chunk_fails_alone_in_the_parent() -> None:
    with Pool(processes=1) as pool:
        items: list[tuple[Any, ...]] = [(1,), (threading.Lock(),), (3,)]
        future, _ = local_engine(pool).submit_unit(ft.identity._self_options, items, unary=False)
        outcomes = future.result(timeout=30)
        assert outcomes[0] == (True, 1)
        assert outcomes[2] == (True, 3)
        ok, error = outcomes[1]
        assert not ok
        _check_pickling_error(error, "identity", "argument", "'_thread.lock'")
        # and through the public map: the values before it, then its error
        values = ft.identity.map([1, threading.Lock(), 3], chunksize=3)
        assert next(values) == 1
        with pytest.raises(TaskPicklingError):
            next(values)


@pytest.mark.parametrize("case", ["reduce raises on load", "__setstate__ raises"])
def test_the_bad_argument_of_a_chunk_fails_alone_in_the_worker(case: str) -> None:
    make, direction, words = ARGUMENTS[case]
    with Pool(processes=1) as pool:
        outcomes = _run_chunk(pool, ft.identity, [(1,), (make(),), (3,)])
        assert outcomes[0] == (True, 1)
        assert outcomes[2] == (True, 3)
        ok, error = outcomes[1]
        assert not ok
        _check_pickling_error(error, "identity", direction, words)


@pytest.mark.parametrize("kind", sorted(RESULTS))
def test_the_bad_result_of_a_chunk_fails_alone(kind: str) -> None:
    direction, words = RESULTS[kind]
    with Pool(processes=1) as pool:
        outcomes = _run_chunk(pool, ft.map_result, [(x, 2, kind) for x in range(5)])
        assert [outcomes[i] for i in (0, 1, 3, 4)] == [(True, x * 10) for x in (0, 1, 3, 4)]
        ok, error = outcomes[2]
        assert not ok
        _check_pickling_error(error, "map_result", direction, words)
        # through the public map
        values = ft.map_result.map(range(4), [3] * 4, [kind] * 4, chunksize=4)
        assert [next(values) for _ in range(3)] == [0, 10, 20]
        with pytest.raises(TaskPicklingError):
            next(values)


# ------------------------------------------------- nestpool's own errors cross

ERRORS: list[tuple[BaseException, dict[str, Any]]] = [
    (
        WorkerDiedError("died", task_name="t", task_id=3, pid=42, exitcode=-9),
        {"task_name": "t", "task_id": 3, "pid": 42, "exitcode": -9, "signal": "SIGKILL"},
    ),
    (
        WorkerDiedError("exited", task_name="t", task_id=4, pid=43, exitcode=3),
        {"exitcode": 3, "signal": None},
    ),
    (
        TaskTimeoutError("slow", task_name="t", task_id=5, timeout=1.5),
        {"task_name": "t", "task_id": 5, "timeout": 1.5},
    ),
    (TaskPicklingError("bad", task_name="t", direction="result"), {"direction": "result"}),
    (
        RemoteTaskError("remote", type_name="m.E", original_message="m", traceback_text="tb"),
        {"type_name": "m.E", "message": "m", "traceback_text": "tb"},
    ),
    (InitializerError("init", traceback_text="tb"), {"traceback_text": "tb"}),
    (PoolClosedError("cannot schedule new futures after shutdown"), {}),
    (NestpoolError("base"), {}),
]


@pytest.mark.parametrize(("error", "attributes"), ERRORS, ids=lambda e: type(e).__name__)
def test_each_nestpool_error_round_trips_through_pickle(
    error: BaseException, attributes: dict[str, Any]
) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    for name, value in attributes.items():
        assert getattr(copy, name) == value


@pytest.mark.parametrize(("error", "attributes"), ERRORS, ids=lambda e: type(e).__name__)
def test_each_nestpool_error_raised_in_a_task_arrives_as_itself(
    error: BaseException, attributes: dict[str, Any]
) -> None:
    with Pool(processes=1):
        copy = ft.identity(error).result(timeout=30)  # returned as a value
        raised = ft.raise_given(error).exception(timeout=30)
    for received in (copy, raised):
        assert type(received) is type(error)
        assert str(received) == str(error)
        for name, value in attributes.items():
            assert getattr(received, name) == value
