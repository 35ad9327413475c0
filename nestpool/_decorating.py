"""What both decorators share: the checks at decoration, the options record,
wrapt's binding rules, and the typed stand-ins for wrapt's proxies.

What it owns: refusing what cannot be decorated (a non-callable, a task
decorated twice, an async function for ``@process_task``, an async
generator function), validating
``timeout``, ``retries`` and ``name``, building a task's ``TaskOptions``,
and working out what a bound decorated method passes first to its plain
function. ``_process_task`` and ``_thread_subtask`` build on it.

It never touches routes, processes or threads.
"""

from __future__ import annotations

import enum
import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from ._identity import TaskMixin
from ._routing import TaskOptions

P2 = ParamSpec("P2")
S = TypeVar("S")

if TYPE_CHECKING:

    class FunctionWrapper:
        """What the type checker needs to know of wrapt's proxies."""

        __wrapped__: Any
        __name__: str
        __qualname__: str
        _self_parent: Any
        _self_instance: Any
        _self_owner: Any
        _self_binding: str

        def __init__(self, wrapped: Any, wrapper: Any) -> None: ...


class _Keep(enum.Enum):
    """The default of ``options()``'s arguments: keep the task's own."""

    KEEP = "keep"

    def __repr__(self) -> str:
        return "<the task's own>"


#: typed Any so that ``options()``'s signature shows the options' own types
_KEEP: Any = _Keep.KEEP


def _plain_function(fn: Any) -> Callable[..., Any]:
    if isinstance(fn, (staticmethod, classmethod)):
        return cast("staticmethod[..., Any] | classmethod[Any, ..., Any]", fn).__func__
    plain: Callable[..., Any] = fn
    return plain


def check_decorated(decorator: str, fn: object) -> None:
    if not callable(fn) and not isinstance(fn, (staticmethod, classmethod)):
        raise TypeError(
            f"@{decorator} decorates a function; got {type(fn).__name__} {fn!r}. "
            f"Use @{decorator} or @{decorator}(...) directly above a def."
        )
    plain = _plain_function(fn)
    real_type: type[Any] = type(plain)  # wrapt proxies fake __class__: ask type()
    if issubclass(real_type, TaskMixin):
        # Calls would return a Future holding a Future: always a mistake.
        kind = "process_task" if real_type._self_kind == "process" else "thread_subtask"
        raise TypeError(
            f"@{decorator} cannot decorate {plain.__qualname__!r}: it is already a "
            f"@{kind}. Decorate the plain function once (its .sync calls it "
            "undecorated)."
        )
    if is_async(plain) and decorator == "process_task":
        raise TypeError(
            f"@process_task cannot decorate {getattr(plain, '__qualname__', plain)!r}: it is "
            "an async function, and a process task is a plain function run in a worker "
            "process. Decorate the async function with @thread_subtask instead: it then "
            "runs on the event loop of the process that calls it (a worker's own loop "
            "inside a process task), and a process task can call it."
        )
    if inspect.isasyncgenfunction(plain):
        raise TypeError(
            f"@{decorator} cannot decorate {getattr(plain, '__qualname__', plain)!r}: it is "
            "an async generator function, whose calls give no single value to put in a "
            "future. Decorate an async def that returns its values (a list, say)."
        )


def is_async(fn: object) -> bool:
    """True for a coroutine function, or an object whose calls return coroutines
    (its class's ``__call__`` is async)."""
    plain = _plain_function(fn)
    if inspect.iscoroutinefunction(plain):
        return True
    if inspect.isroutine(plain):
        return False
    call = inspect.getattr_static(type(plain), "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def args_with_instance(instance: Any, binding: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # wrapt hands the bound object separately; the plain function wants it first.
    if instance is not None and binding in ("function", "instancemethod", "classmethod"):
        return (instance, *args)
    return args


def with_instance(bound: Any, iterables: tuple[Iterable[Any], ...]) -> tuple[Iterable[Any], ...]:
    first = bound_first(bound)
    if first:
        return (itertools.repeat(first[0]), *iterables)
    return iterables


def bound_first(bound: Any) -> tuple[Any, ...]:
    """What a bound decorated method passes first to its plain function:
    ``(instance,)``, ``(cls,)`` for a class method, ``()`` for a static one.

    For ``@process_task`` over ``@classmethod`` wrapt keeps in ``_self_instance``
    the object it was reached through (None through the class), not the class:
    the class is the ``__self__`` of the bound classmethod it wraps.
    """
    binding = getattr(bound, "_self_binding", None)
    if binding == "classmethod":
        owner = getattr(bound.__wrapped__, "__self__", None)
        return () if owner is None else (owner,)
    instance = getattr(bound, "_self_instance", None)
    if instance is not None and binding in ("function", "instancemethod"):
        return (instance,)
    return ()


class WrappedAnnotations(dict[str, Any]):
    """A decorated function's ``__annotations__``: the wrapped function's.

    A class body with an annotation in it (even one under ``TYPE_CHECKING``)
    gets its own empty ``__annotations__``, which hides the one wrapt's proxy
    forwards: ``typing.get_type_hints(task)`` would see ``{}``. This stands in
    its place; read on the class, it is an empty dict, as the class body's own
    would be.
    """

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return instance.__wrapped__.__annotations__


def make_options(
    kind: str, fn: Any, name: str | None, timeout: float | None
) -> tuple[TaskOptions, Callable[..., Any]]:
    plain = _plain_function(fn)
    if name is None:
        qualname: str | None = getattr(plain, "__qualname__", None)
        name = qualname or repr(plain)
    return TaskOptions(plain, name, timeout, kind), plain


def binding_of(fn: object) -> str:
    if isinstance(fn, staticmethod):
        return "staticmethod"
    if isinstance(fn, classmethod):
        return "classmethod"
    return "function"


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    # Checked at run time too, for callers that are not type-checked.
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def check_retries(retries: int) -> int:
    # Checked at run time too, for callers that are not type-checked.
    if isinstance(retries, bool) or not isinstance(retries, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"retries must be an int, got {type(retries).__name__}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    return retries


def check_flag(value: bool) -> bool:
    # Checked at run time too, for callers that are not type-checked.
    if not isinstance(value, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"stop_on_cancel must be a bool, got {type(value).__name__}")
    return value


def check_name(name: object) -> None:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
