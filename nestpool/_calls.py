"""What a call handed to ``Pool.submit`` or ``Pool.map`` runs.

What it owns: turning the callable a user hands the pool (a plain callable, a
decorated task, a bound method of one, a ``functools.partial`` of one, nested
partials too) into the ``_backend.Work`` the backends run and the arguments
it runs with: a decorated task runs its plain function, never the task itself
(which would give a Future, and a Future cannot come back from a worker).

It must never run, pickle or send anything itself: backends do.
"""

from __future__ import annotations

import functools
import itertools
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from ._reach import Reach
from ._serialize import FunctionPayload, ReducedByNestpool, dumps_callable, loads

if TYPE_CHECKING:
    from ._backend import Work
    from ._routing import TaskOptions

__all__ = ["CallableWork", "callable_name", "map_work", "submit_work"]


class CallableWork:
    """The ``Work`` of a callable that is not a decorated task (whose own
    ``TaskOptions`` is its ``Work``): sent by reference, or by value where
    the workers cannot import it."""

    __slots__ = ("fn", "name", "retries", "stop_on_cancel", "timeout")

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        timeout: float | None,
        retries: int = 0,
        stop_on_cancel: bool = False,
    ) -> None:
        self.fn = fn
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self.stop_on_cancel = stop_on_cancel

    def get_payload(self, reach: Reach = "spawned") -> FunctionPayload:
        """The pickled callable a worker of that reach runs (cached while it lives)."""
        return dumps_callable(self.fn, reach)


def submit_work(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Work, tuple[Any, ...], dict[str, Any]]:
    """What ``Pool.submit(fn, *args, **kwargs)`` runs, with which arguments."""
    unwrapped = _partial_of_task(fn)
    if unwrapped is not None:
        # Called in the worker, the task would give a Future, which cannot
        # come back: the task's own path runs, with the partial's arguments.
        fn, first, keywords = unwrapped
        args = (*first, *args)
        kwargs = {**keywords, **kwargs}
    options: TaskOptions | None = getattr(fn, "_self_options", None)
    if options is not None:
        # A decorated function: its plain function runs in the worker.
        return options, (*_bound_instance(fn), *args), kwargs
    return CallableWork(fn, callable_name(fn), None), args, kwargs


def map_work(
    fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...]
) -> tuple[Work, tuple[Iterable[Any], ...]]:
    """What ``Pool.map(fn, *iterables)`` runs, over which iterables."""
    options: TaskOptions | None = getattr(fn, "_self_options", None)
    if options is not None:
        # A bound method's instance (or class) goes first in every call.
        return options, (*map(itertools.repeat, _bound_instance(fn)), *iterables)
    unwrapped = _partial_of_task(fn)
    if unwrapped is not None:
        # A partial of a task: a partial of the task's plain function runs
        # (the task itself would give a Future, which cannot come back).
        task, first, keywords = unwrapped
        task_options: TaskOptions = task._self_options
        plain = functools.partial(
            _PlainFunction(task_options), *_bound_instance(task), *first, **keywords
        )
        work = CallableWork(
            plain,
            task_options.name,
            task_options.timeout,
            task_options.retries,
            task_options.stop_on_cancel,
        )
        return work, iterables
    return CallableWork(fn, callable_name(fn), None), iterables


def callable_name(fn: object) -> str:
    """The name of a callable in errors and logs: its qualified name; for a
    ``functools.partial``, ``partial(<name>)``; for a callable object, its
    class's qualified name (never a repr with an address in it)."""
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str) and name:
        return name
    inner = getattr(fn, "func", None)
    if isinstance(fn, functools.partial) and inner is not None:
        return f"partial({callable_name(inner)})"
    # (pyright narrows fn to object | partial[Unknown] here: a partial's type is unsolved)
    return type(fn).__qualname__  # pyright: ignore[reportUnknownArgumentType]


_PARTIAL_CALL = cast("type[functools.partial[Any]]", functools.partial).__call__


def _partial_of_task(fn: object) -> tuple[Any, tuple[Any, ...], dict[str, Any]] | None:
    """For ``functools.partial`` layers around a decorated task (nested ones
    too): the task, and the arguments and keywords the layers put before a
    call's own; None for anything else.

    A partial subclass with its own ``__call__`` is left alone: it may not
    call its function the usual way.
    """
    layers: list[functools.partial[Any]] = []
    inner: object = fn
    # Only functools.partial and its subclasses that keep its __call__ have
    # this very __call__ (a class without one gives type.__call__ here).
    while type(inner).__call__ is _PARTIAL_CALL:
        layer = cast("functools.partial[Any]", inner)
        layers.append(layer)
        inner = layer.func
    if not layers or getattr(inner, "_self_options", None) is None:
        return None
    args: tuple[Any, ...] = ()
    keywords: dict[str, Any] = {}
    # partial(partial(f, a, k=1), b, k=2)(c) is f(a, b, c, k=2): the innermost
    # layer's arguments first, an outer layer's keyword over an inner one's.
    for layer in reversed(layers):
        args += layer.args
        keywords.update(layer.keywords)
    return inner, args, keywords


class _PlainFunction(ReducedByNestpool):
    """Calls a decorated task's plain function; pickles as that function
    itself (the task's own payload: by reference, or by value), so that a
    partial of it arrives in the worker as a partial of the plain function."""

    __slots__ = ("options",)

    def __init__(self, options: TaskOptions) -> None:
        self.options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.options.fn(*args, **kwargs)

    def _self_reduce(self, reach: Reach) -> tuple[Any, ...]:
        return loads, (bytes(self.options.get_payload(reach)),)

    def __reduce__(self) -> tuple[Any, ...]:
        return self._self_reduce("spawned")


def _bound_instance(task: object) -> tuple[Any, ...]:
    """``(instance,)`` for a decorated method bound to one (``obj.method``),
    ``(cls,)`` for a class method, else ``()``.

    The pool runs a decorated task's plain function, which wants the instance
    (or, for a class method, the class) first (``_decorating.bound_first``).
    """
    if isinstance(task, types.MethodType):
        # @classmethod over a decorated function on Python 3.13+, where
        # classmethod no longer binds through the task's __get__: a plain
        # bound method whose __self__ is the class.
        return (task.__self__,)
    from ._decorating import bound_first

    return bound_first(task)
