"""What a decorated function is when it travels: how it pickles, and how a
worker finds it again.

What it owns: ``TaskMixin``, the base both decorated kinds share for pickling
(by reference, module and qualified name, when the worker can import the
function; by value, cloudpickle, otherwise) and for the payload a worker gets
(``_self_payload``: the plain function, by reference or by value); and the
functions those pickles name, which a worker calls to find the function again
(``resolve_qualname``) or to rebuild the task.

It never decides where a call runs and never touches processes, threads or
the routes: the decorators (``_process_task``, ``_thread_subtask``) do that.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._reach import Reach, needs_by_value
from ._serialize import FunctionPayload, ReducedByNestpool, dumps, dumps_by_value

if TYPE_CHECKING:
    from ._routing import TaskOptions

__all__ = ["TaskMixin", "resolve_qualname"]


def resolve_qualname(module: str, qualname: str) -> Any:
    """Import ``module`` and walk ``qualname`` through it (class ``__dict__`` first,
    so a decorated method is found as itself, not bound)."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        namespace = getattr(obj, "__dict__", {})
        obj = namespace[part] if part in namespace else getattr(obj, part)
    return obj


def _resolve_task(module: str, qualname: str) -> Any:
    return resolve_qualname(module, qualname)


def _resolve_plain(module: str, qualname: str) -> Callable[..., Any]:
    """In a worker: the plain function behind the decorated one at that name."""
    proxy = resolve_qualname(module, qualname)
    options: TaskOptions = proxy._self_options
    return options.fn


def _resolve_variant(
    module: str,
    qualname: str,
    timeout: float | None,
    retries: int,
    stop_on_cancel: bool = False,
) -> Any:
    """A variant made by ``options()``: the original, found by name, with its options."""
    task = _resolve_task(module, qualname)
    return task.options(timeout=timeout, retries=retries, stop_on_cancel=stop_on_cancel)


def _rebuild_task(
    kind: str,
    fn: Callable[..., Any],
    name: str,
    timeout: float | None,
    retries: int = 0,
    stop_on_cancel: bool = False,
) -> Any:
    # The decorators' modules import this one; a pickle that names this
    # function has imported nestpool, so they are loaded by now.
    from ._process_task import process_task
    from ._thread_subtask import thread_subtask

    if kind == "process":
        return process_task(
            timeout=timeout, retries=retries, stop_on_cancel=stop_on_cancel, name=name
        )(fn)
    return thread_subtask(name=name)(fn)


class _PlainRef:
    """Pickles as 'import this module, find that decorated function, unwrap it'."""

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __reduce__(self) -> tuple[Any, ...]:
        return _resolve_plain, (self.module, self.qualname)


class TaskMixin(ReducedByNestpool):
    """What both decorated kinds share: pickling and the payload for workers."""

    _self_options: TaskOptions
    _self_kind: str
    #: the decorated function an ``options()`` variant was made from (None
    #: for the original itself): what workers find by name
    _self_origin: Any = None

    def _self_locate(self, reach: Reach = "spawned") -> tuple[str, str] | None:
        origin = self._self_origin
        options = (self if origin is None else origin)._self_options
        fn = options.fn
        if needs_by_value(fn, reach):
            return None
        module, qualname = fn.__module__, fn.__qualname__
        try:
            found = resolve_qualname(module, qualname)
        except Exception:
            return None
        if getattr(found, "_self_options", None) is not options:
            return None  # another decorator stands over ours: not reachable by name
        return module, qualname

    def _self_payload(self, reach: Reach) -> FunctionPayload:
        located = self._self_locate(reach)
        if located is not None:
            return FunctionPayload(dumps(_PlainRef(*located)))
        return FunctionPayload(dumps_by_value(self._self_options.fn, reach))

    def _self_reduce(self, reach: Reach) -> tuple[Any, ...]:
        located = self._self_locate(reach)
        options = self._self_options
        if located is not None:
            if self._self_origin is None:
                return _resolve_task, located
            return _resolve_variant, (
                *located,
                options.timeout,
                options.retries,
                options.stop_on_cancel,
            )
        return _rebuild_task, (
            self._self_kind,
            options.fn,
            options.name,
            options.timeout,
            options.retries,
            options.stop_on_cancel,
        )

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self._self_reduce("spawned")

    def __reduce__(self) -> tuple[Any, ...]:
        return self._self_reduce("spawned")
