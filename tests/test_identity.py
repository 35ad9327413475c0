"""Decorated functions keep their identity (``__name__``, ``__doc__``,
``__wrapped__``, signature, ``help()``), and calling one never raises the
task's own exception, inline included: it travels in the future."""

from __future__ import annotations

import inspect
import math
import os
import pydoc
import sys
import threading
import typing
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from nestpool import (
    AsyncSubtask,
    Pool,
    ProcessTask,
    ThreadSubtask,
    process_task,
    thread_subtask,
)
from tests import core_tasks, helpers

pytestmark = pytest.mark.timeout(60)


def _original(x: int, *, scale: float = 1.0) -> float:
    """Scale a number.

    Args:
        x: the number.
    """
    return x * scale


DECORATORS: list[Callable[[Any], Any]] = [
    process_task,
    process_task(timeout=5.0, name="custom"),
    thread_subtask,
    thread_subtask(name="custom"),
]


@pytest.mark.parametrize("decorator", DECORATORS)
def test_decorated_functions_keep_their_identity(decorator: Callable[[Any], Any]) -> None:
    task = decorator(_original)
    assert task.__name__ == "_original"
    assert task.__qualname__ == "_original"
    assert task.__doc__ == _original.__doc__
    assert task.__wrapped__ is _original
    assert task.__module__ == __name__
    assert task.__annotations__ == _original.__annotations__
    assert typing.get_type_hints(task) == {"x": int, "scale": float, "return": float}
    assert inspect.signature(task) == inspect.signature(_original)
    assert str(inspect.signature(task)) == "(x: 'int', *, scale: 'float' = 1.0) -> 'float'"
    assert inspect.getdoc(task) == inspect.getdoc(_original)
    text = pydoc.render_doc(task, renderer=pydoc.plaintext)
    assert "_original(x: 'int', *, scale: 'float' = 1.0) -> 'float'" in text
    assert "Scale a number." in text
    assert "x: the number." in text
    assert callable(task)


def test_name_option_names_the_task_not_the_function() -> None:
    task = process_task(name="custom")(_original)
    assert task.task_name == "custom"
    assert task.__name__ == "_original"
    assert process_task(_original).task_name == "_original"
    assert core_tasks.Scaler.__dict__["scale"].task_name == "Scaler.scale"


def test_help_shows_the_signature_and_docstring_of_module_tasks() -> None:
    text = pydoc.render_doc(helpers.add, renderer=pydoc.plaintext)
    assert "add(a: 'int', b: 'int' = 0) -> 'int'" in text
    assert "A trivial process task." in text
    method_text = pydoc.render_doc(core_tasks.Scaler, renderer=pydoc.plaintext)
    assert "scale(self, x: 'int') -> 'tuple[int, int]'" in method_text
    assert "Multiply by the instance's factor." in method_text


# ------------------------------------------------------------ sync


def test_sync_calls_the_plain_function_and_returns_its_value() -> None:
    assert core_tasks.double_it.sync(4) == 8
    assert helpers.double.sync(5) == 10
    with Pool(processes=1, threads=1):
        # with a pool open too: here, now, no future
        assert helpers.where_task.sync() == (os.getpid(), False)
        pid, ident, _ = helpers.where_subtask.sync()
        assert (pid, ident) == (os.getpid(), threading.get_ident())


def test_sync_raises_the_function_exception_directly() -> None:
    with pytest.raises(ValueError, match=r"^boom$"):
        helpers.raise_value_error.sync("boom")
    with pytest.raises(ValueError, match=r"^value$"):
        core_tasks.subtask_raise_kind.sync("value")


def test_sync_on_methods() -> None:
    scaler = core_tasks.Scaler(3)
    assert scaler.scale.sync(2) == (6, os.getpid())
    assert core_tasks.Scaler.scale.sync(scaler, 2) == (6, os.getpid())
    assert core_tasks.Scaler.static_outer.sync(2) == (20, os.getpid())
    assert core_tasks.Scaler.static_inner.sync(2) == (200, os.getpid())
    assert scaler.static_inner.sync(2) == (200, os.getpid())
    assert core_tasks.SubScaler.class_inner.sync(2) == ("SubScaler", 2, os.getpid())
    assert list(core_tasks.SubScaler.class_inner.map([2])) == [("SubScaler", 2, os.getpid())]
    if sys.version_info < (3, 13):
        assert core_tasks.Scaler.class_outer.sync(2) == ("Scaler", 2, os.getpid())
        assert list(core_tasks.Scaler.class_outer.map([2])) == [("Scaler", 2, os.getpid())]
    else:
        # @classmethod above the task: Python 3.13 no longer hands the class to
        # the wrapped descriptor, so .sync and .map do not get it (docs/routing.md);
        # calling still works (test_methods_of_every_kind_*).
        with pytest.raises(TypeError, match="missing 1 required positional argument"):
            core_tasks.Scaler.class_outer.sync(2)
    assert scaler.sub_scale.sync(2) == (6, threading.current_thread().name)


# ------------------------------------------------------------ methods


def _method_calls(scaler: core_tasks.Scaler) -> dict[str, Future[Any]]:
    return {
        "bound": scaler.scale(2),
        "unbound": core_tasks.Scaler.scale(scaler, 2),
        "static_outer_cls": core_tasks.Scaler.static_outer(2),
        "static_outer_obj": scaler.static_outer(2),
        "static_inner_cls": core_tasks.Scaler.static_inner(2),
        "static_inner_obj": scaler.static_inner(2),
        "class_outer_cls": core_tasks.Scaler.class_outer(2),
        "class_outer_sub": core_tasks.SubScaler.class_outer(2),
        "class_inner_obj": scaler.class_inner(2),
        "class_inner_sub": core_tasks.SubScaler(1).class_inner(2),
    }


def _method_values(pid: int) -> dict[str, Any]:
    return {
        "bound": (6, pid),
        "unbound": (6, pid),
        "static_outer_cls": (20, pid),
        "static_outer_obj": (20, pid),
        "static_inner_cls": (200, pid),
        "static_inner_obj": (200, pid),
        "class_outer_cls": ("Scaler", 2, pid),
        "class_outer_sub": ("SubScaler", 2, pid),
        "class_inner_obj": ("Scaler", 2, pid),
        "class_inner_sub": ("SubScaler", 2, pid),
    }


def test_methods_of_every_kind_work_inline() -> None:
    calls = _method_calls(core_tasks.Scaler(3))
    assert all(f.done() for f in calls.values())
    assert {name: f.result() for name, f in calls.items()} == _method_values(os.getpid())


def test_methods_of_every_kind_run_in_a_worker(start_method: str) -> None:
    with Pool(processes=1, threads=1, start_method=start_method) as pool:
        calls = _method_calls(core_tasks.Scaler(3))  # the instance is pickled along
        values = {name: f.result(timeout=30) for name, f in calls.items()}
        pid = pool.worker_pids()[0]
        assert values == _method_values(pid)
        scaler = core_tasks.Scaler(4)
        assert list(scaler.scale.map([1, 2])) == [(4, pid), (8, pid)]
        assert pool.submit(scaler.scale, 5).result(timeout=30) == (20, pid)
        assert list(pool.map(scaler.scale, [1])) == [(4, pid)]
        # a subtask method runs on the parent's thread pool
        value, thread_name = scaler.sub_scale(2).result(timeout=30)
        assert value == 8
        assert thread_name.startswith("nestpool")


def test_map_and_submit_pass_the_instance_or_class_of_every_method_kind() -> None:
    scaler, sub = core_tasks.Scaler(3), core_tasks.SubScaler(3)
    bound: dict[str, Any] = {
        "bound": scaler.scale,
        "static_outer_cls": core_tasks.Scaler.static_outer,
        "static_inner_obj": scaler.static_inner,
        "class_inner_cls": core_tasks.Scaler.class_inner,
        "class_inner_obj": scaler.class_inner,
        "class_inner_sub": core_tasks.SubScaler.class_inner,
        "class_inner_sub_obj": sub.class_inner,
    }
    if sys.version_info < (3, 13):  # see test_sync_on_methods
        bound["class_outer_sub"] = core_tasks.SubScaler.class_outer
    with Pool(processes=1, threads=1) as pool:
        pid = pool.submit(os.getpid).result(timeout=30)
        first = {
            "bound": (6, pid),
            "static_outer_cls": (20, pid),
            "static_inner_obj": (200, pid),
            "class_inner_cls": ("Scaler", 2, pid),
            "class_inner_obj": ("Scaler", 2, pid),
            "class_inner_sub": ("SubScaler", 2, pid),
            "class_inner_sub_obj": ("SubScaler", 2, pid),
            "class_outer_sub": ("SubScaler", 2, pid),
        }
        for name, method in bound.items():
            assert list(method.map([2])) == [first[name]], name
            assert pool.submit(method, 2).result(timeout=30) == first[name], name
            assert list(pool.map(method, [2])) == [first[name]], name


def test_an_instance_that_cannot_be_pickled_fails_the_future_clearly() -> None:
    scaler = core_tasks.Scaler(2)
    scaler.lock = threading.Lock()  # type: ignore[attr-defined]
    with Pool(processes=1):
        error = scaler.scale(1).exception(timeout=30)
    assert type(error).__name__ == "TaskPicklingError"
    assert "Scaler.scale" in str(error)
    assert "argument" in str(error)


# ------------------------------------------------------------ refusals


class _NotCallable:
    pass


@pytest.mark.parametrize("decorator", [process_task, thread_subtask])
@pytest.mark.parametrize("thing", [None, 42, "text", _NotCallable(), [print]])
def test_decorating_a_non_callable_is_a_type_error(
    decorator: Callable[[Any], Any], thing: object
) -> None:
    name = decorator.__name__
    with pytest.raises(
        TypeError, match=rf"^@{name} decorates a function; got {type(thing).__name__}"
    ):
        decorator(thing)


async def _coroutine_function() -> int:
    return 1


async def _async_generator() -> Any:
    yield 1


class _AsyncCallable:
    async def __call__(self) -> int:
        return 1


@pytest.mark.parametrize("decorator", [process_task, process_task(timeout=1.0)])
@pytest.mark.parametrize(
    "fn",
    [
        _coroutine_function,
        staticmethod(_coroutine_function),
        _AsyncCallable(),  # an object whose calls return coroutines
    ],
)
def test_a_process_task_of_an_async_function_is_a_type_error(
    decorator: Callable[[Any], Any], fn: Any
) -> None:
    with pytest.raises(TypeError, match="it is an async function") as info:
        decorator(fn)
    assert "@thread_subtask" in str(info.value)


@pytest.mark.parametrize(
    "decorator",
    [process_task, thread_subtask, process_task(timeout=1.0), thread_subtask(name="n")],
)
def test_decorating_an_async_generator_function_is_a_type_error(
    decorator: Callable[[Any], Any],
) -> None:
    with pytest.raises(TypeError, match="it is an async generator function"):
        decorator(_async_generator)


@pytest.mark.parametrize("decorator", [thread_subtask, thread_subtask(name="n")])
@pytest.mark.parametrize(
    "fn", [_coroutine_function, staticmethod(_coroutine_function), _AsyncCallable()]
)
def test_a_thread_subtask_of_an_async_function_is_an_async_subtask(
    decorator: Callable[[Any], Any], fn: Any
) -> None:
    task = decorator(fn)
    assert type(task) is AsyncSubtask
    if not isinstance(fn, staticmethod):
        assert task().result() == 1


@pytest.mark.parametrize("outer", [process_task, thread_subtask])
@pytest.mark.parametrize(
    ("inner", "kind"),
    [(core_tasks.double_it, "process_task"), (helpers.double, "thread_subtask")],
)
def test_decorating_a_decorated_function_is_a_type_error(
    outer: Callable[[Any], Any], inner: Any, kind: str
) -> None:
    # it would return a Future of a Future
    with pytest.raises(TypeError, match=f"it is already a @{kind}"):
        outer(inner)
    with pytest.raises(TypeError, match=f"it is already a @{kind}"):
        outer(staticmethod(inner))


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5, math.nan])
def test_a_timeout_that_is_not_positive_is_a_value_error(timeout: float) -> None:
    with pytest.raises(ValueError, match=r"^timeout must be > 0 seconds, got "):
        process_task(timeout=timeout)


@pytest.mark.parametrize("timeout", [True, False, "5", [5]])
def test_a_timeout_that_is_not_a_number_is_a_type_error(timeout: Any) -> None:
    with pytest.raises(TypeError, match=r"^timeout must be a number of seconds, got "):
        process_task(timeout=timeout)


def test_timeout_options_are_kept() -> None:
    assert process_task(timeout=2)(_original).timeout == 2.0
    assert isinstance(process_task(timeout=2)(_original).timeout, float)
    assert process_task(_original).timeout is None


def test_subtasks_have_no_timeout_and_names_are_strings() -> None:
    with pytest.raises(TypeError):
        thread_subtask(timeout=1.0)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"^name must be a str, got int$"):
        process_task(name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^name must be a str, got int$"):
        thread_subtask(name=3)  # type: ignore[arg-type]


def test_the_decorated_types_are_exported() -> None:
    assert isinstance(core_tasks.double_it, ProcessTask)
    assert isinstance(helpers.double, ThreadSubtask)


# ------------------------------------------------- calling never raises


@pytest.mark.parametrize("kind", core_tasks.KINDS)
def test_inline_calls_keep_every_exception_in_the_future(kind: str) -> None:
    expected = {
        "value": ValueError,
        "exit": SystemExit,
        "base": core_tasks.CustomBaseError,
        "generator-exit": GeneratorExit,
    }[kind]
    futures = [core_tasks.raise_kind(kind), core_tasks.subtask_raise_kind(kind)]
    with Pool(processes=0, threads=0) as pool:
        futures += [
            core_tasks.raise_kind(kind),
            core_tasks.subtask_raise_kind(kind),
            pool.submit(core_tasks.raise_kind, kind),
            pool.submit(core_tasks._raise, kind),
        ]
    for future in futures:
        assert future.done()
        assert type(future.exception()) is expected
        with pytest.raises(expected):
            future.result()


@pytest.mark.parametrize("processes", [None, 0])
def test_keyboard_interrupt_is_the_one_exception_an_inline_call_also_raises(
    processes: int | None,
) -> None:
    # Deliberate: Ctrl-C must still stop a program whose task ran inline.
    def interrupted() -> None:
        raise KeyboardInterrupt

    task = process_task(interrupted)
    subtask = thread_subtask(interrupted)
    if processes is None:
        with pytest.raises(KeyboardInterrupt):
            task()
        with pytest.raises(KeyboardInterrupt):
            subtask()
        return
    with Pool(processes=0, threads=0) as pool:
        with pytest.raises(KeyboardInterrupt):
            task()
        with pytest.raises(KeyboardInterrupt):
            pool.submit(interrupted)


def test_in_a_worker_every_exception_stays_in_its_future(start_method: str) -> None:
    with Pool(processes=1, threads=1, start_method=start_method):
        report = core_tasks.outcomes_in_worker().result(timeout=30)
    expected = {
        "value": "ValueError",
        "exit": "SystemExit",
        "base": "CustomBaseError",
        "generator-exit": "GeneratorExit",
    }
    for kind, name in expected.items():
        assert report[f"task-{kind}"] == (True, name)
        # a subtask the waiting thread ran itself: exception() returns it, and
        # wait() returns, as for a subtask a pool thread ran
        assert report[f"subtask-{kind}"] == name
        assert report[f"wait-{kind}"] == name


@pytest.mark.parametrize("kind", ["exit", "base"])
def test_base_exceptions_of_process_tasks_come_back_as_themselves(kind: str) -> None:
    expected = SystemExit if kind == "exit" else core_tasks.CustomBaseError
    with Pool(processes=1, threads=1) as pool:
        future = core_tasks.raise_kind(kind)
        assert type(future.exception(timeout=30)) is expected
        assert pool.submit(os.getpid).result(timeout=30) == pool.worker_pids()[0]


def test_a_call_with_wrong_arguments_fails_its_future_not_the_caller() -> None:
    future = core_tasks.double_it(1, 2, 3)  # type: ignore[call-arg]
    assert isinstance(future.exception(), TypeError)
    with Pool(processes=1):
        future = core_tasks.double_it(1, 2, 3)  # type: ignore[call-arg]
        assert isinstance(future.exception(timeout=30), TypeError)
