"""How things cross the process boundary: by reference when the worker can import
them, by value (cloudpickle) when it cannot, and exceptions with their traceback.

This module owns the wire encoding of callables, arguments, results and
exceptions. It must never import parent-side modules (it is loaded by workers)
and never swallow an error: every failure is turned into an exported
``TaskPicklingError`` or ``RemoteTaskError`` that names the task.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import traceback
import types
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

# cloudpickle ships no types (no stubs, no py.typed): see _CloudPickler below.
# The ignore is in the code, not in nestpool's mypy configuration, so that a
# user's mypy, which reads its own configuration, sees the package clean too.
import cloudpickle  # type: ignore[import-untyped]

from ._errors import RemoteTaskError, TaskPicklingError
from ._reach import Reach, importable_by_name, needs_by_value

__all__ = [
    "CallableByValue",
    "ChunkValues",
    "ExceptionWithTraceback",
    "FunctionPayload",
    "FutureCannotCrossError",
    "ReducedByNestpool",
    "RemoteTraceback",
    "dumps",
    "dumps_builtins",
    "dumps_by_value",
    "dumps_callable",
    "exception_payload",
    "loads",
    "needs_by_value",
]

PROTOCOL = pickle.HIGHEST_PROTOCOL
loads = pickle.loads


class ChunkValues(list[Any]):
    """A chunk's result when every item succeeded: the values themselves.

    Otherwise a chunk's result is a list of ``(ok, value_or_exception)``
    outcomes, one per item. Handing the values over as they are spares a
    tuple per item in the worker, on the wire and in the parent, a good part
    of what a tiny item costs; ``as_outcomes`` gives the general form back.
    """

    __slots__ = ()


def as_outcomes(result: list[Any]) -> list[tuple[bool, Any]]:
    """A chunk's result as ``(ok, value_or_exception)`` outcomes, one per item."""
    if type(result) is ChunkValues:
        return [(True, value) for value in result]
    return result


class ReducedByNestpool:
    """Base of objects that pickle through their own ``_self_reduce``.

    nestpool's decorated functions are wrapt proxies that claim to be
    functions (``__class__``), which keeps ``help()`` and ``inspect`` working
    but would make cloudpickle copy them as bare functions and lose the
    decorator; ``_Pickler`` looks at the real type first.
    """

    __slots__ = ()

    def _self_reduce(self, reach: Reach) -> tuple[Any, ...]:
        """The reduction for workers of that reach (see ``Reach``)."""
        raise NotImplementedError


if TYPE_CHECKING:

    class _CloudPickler(pickle.Pickler):
        """cloudpickle ships no types: its Pickler, a pickle.Pickler, as used here."""

        proto: int

else:
    _CloudPickler = cloudpickle.Pickler


class FutureCannotCrossError(pickle.PicklingError):
    """A ``concurrent.futures.Future`` met while pickling: it belongs to the
    process that made it (its waiters, callbacks and lock live there).

    The standard pickler fails at the future's lock with a bare "cannot
    pickle '_thread.RLock' object"; nestpool's pickler, which ``dumps`` tries
    next, stops at the future itself with this, so ``pickling_error`` can say
    what happened and what to do.
    """


class _Pickler(_CloudPickler):
    def __init__(self, file: io.BytesIO, protocol: int, reach: Reach = "spawned") -> None:
        super().__init__(file, protocol=protocol)
        self.reach: Reach = reach

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(type(obj), type) and issubclass(type(obj), ReducedByNestpool):  # pyright: ignore[reportUnnecessaryIsInstance]
            return obj._self_reduce(self.reach)
        if isinstance(obj, Future):
            raise FutureCannotCrossError(
                "a concurrent.futures.Future cannot cross the process boundary: "
                "it belongs to the process that made it"
            )
        return super().reducer_override(obj)


def dumps_by_value(obj: object, reach: Reach = "spawned") -> bytes:
    """cloudpickle ``obj`` (lambdas, closures, what workers cannot import, by value).

    Args:
        reach: the workers it must reach (see ``Reach``).

    A module that workers cannot import by its name (``importable_by_name``)
    but cloudpickle would reference (it has a file: a plugin loaded from a
    path) is registered with cloudpickle as pickled by value, so that its
    functions and classes travel whole.
    """
    module_name = getattr(obj, "__module__", None)
    if isinstance(module_name, str) and not importable_by_name(module_name):
        module = sys.modules.get(module_name)
        if module is not None and module_name not in _registered_by_value:
            try:
                cloudpickle.register_pickle_by_value(module)  # pyright: ignore[reportUnknownMemberType]
            except Exception:  # pragma: no cover - not a real module
                pass
            _registered_by_value.add(module_name)
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, PROTOCOL, reach).dump(obj)
    except Exception as exc:
        culprit = _unpicklable_part(obj)
        if culprit is None:
            raise
        raise pickle.PicklingError(f"{culprit} cannot be pickled ({exc})") from exc
    return buffer.getvalue()


def _unpicklable_part(fn: object) -> str | None:
    """Name the global or captured variable of a function that stops it from
    pickling by value, with its type; None if none alone does."""
    code = getattr(fn, "__code__", None)
    namespace = getattr(fn, "__globals__", None)
    if not isinstance(code, types.CodeType) or not isinstance(namespace, dict):
        return None
    names: set[str] = set()
    codes = [code]
    while codes:
        current = codes.pop()
        names.update(current.co_names)
        codes.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    candidates: list[tuple[str, object]] = [
        (f"global {name!r}", namespace[name])
        for name in sorted(names)
        if name in namespace and not isinstance(namespace[name], types.ModuleType)
    ]
    cells = getattr(fn, "__closure__", None) or ()
    for var, cell in zip(code.co_freevars, cells, strict=False):
        try:
            candidates.append((f"captured variable {var!r}", cell.cell_contents))
        except ValueError:  # an empty cell
            continue
    for label, value in candidates:
        try:
            _Pickler(io.BytesIO(), PROTOCOL).dump(value)
        except Exception:
            kind = type(value)
            return f"{label} (a {kind.__module__}.{kind.__qualname__})"
    return None


def dumps(obj: object) -> bytes:
    """Pickle ``obj``, falling back to cloudpickle for lambdas, closures and the like.

    Raises:
        Exception: what cloudpickle raised, when it fails too: it goes on to
            the real culprit (a lock, a generator), where the standard
            pickler stops at the first local class or lambda ("Can't pickle
            local object").
    """
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception:
        pass
    return dumps_by_value(obj)


class _NotBuiltin(Exception):
    """Raised by ``_BuiltinsPickler`` at the first object it must not write."""


class _BuiltinsPickler(pickle.Pickler):
    """A pickler of builtin values only: None, bools, ints, floats, complex
    numbers, str, bytes, bytearray, and lists, tuples, dicts, sets and
    frozensets of them. Such a pickle names no class, so it unpickles in any
    process. It stops at the first other object.

    The C pickler writes the types above itself and asks ``reducer_override``
    only about the others, so the check costs nothing per builtin value
    (a walk in Python checking each value's type would cost more than
    pickling it).
    """

    def reducer_override(self, obj: object) -> Any:
        if type(obj) is complex or obj is complex:
            # Reduced by its own __reduce__ to builtins.complex: always there.
            return NotImplemented
        raise _NotBuiltin


def dumps_builtins(obj: object) -> bytes | None:
    """``obj`` pickled if it holds builtin values only (see
    ``_BuiltinsPickler``), else None (also when pickling fails: too deep, say)."""
    buffer = io.BytesIO()
    try:
        _BuiltinsPickler(buffer, PROTOCOL).dump(obj)
    except Exception:
        return None
    return buffer.getvalue()


#: modules this process registered with cloudpickle as pickled by value
_registered_by_value: set[str] = set()


class FunctionPayload(bytes):
    """A pickled callable, with ``key``: a digest that names it on the wire.

    A worker keeps the callables it was sent by key, so a function sent by
    value (with the globals it uses) crosses to each worker once, not with
    every call.
    """

    key: bytes

    def __new__(cls, data: bytes) -> FunctionPayload:
        payload = super().__new__(cls, data)
        payload.key = hashlib.blake2b(data, digest_size=16).digest()
        return payload


#: (id of a callable, reach) -> (a weak reference to it, its payload). Weak:
#: the pool keeps no callable alive (a bound method's object, a partial's
#: arguments) once its futures are done.
_callable_cache: dict[tuple[int, str], tuple[weakref.ref[Any], FunctionPayload]] = {}


def dumps_callable(fn: Callable[..., Any], reach: Reach = "spawned") -> FunctionPayload:
    """Pickle a callable once while it lives (the hot path sends it per task).

    Args:
        reach: the workers it must reach (see ``Reach``).

    Raises:
        Exception: the pickler's error when ``fn`` cannot be sent at all.
    """
    key = (id(fn), reach)
    cached = _callable_cache.get(key)
    if cached is not None and cached[0]() is fn:
        return cached[1]
    if needs_by_value(fn, reach) and not isinstance(fn, types.BuiltinFunctionType):
        payload = FunctionPayload(dumps_by_value(fn, reach))
    else:
        payload = FunctionPayload(dumps(fn))

    def forget(_: object, key: tuple[int, str] = key) -> None:
        _callable_cache.pop(key, None)

    try:
        ref = weakref.ref(fn, forget)
    except TypeError:
        return payload  # not weakly referenceable: not cached
    _callable_cache[key] = (ref, payload)
    return payload


class CallableByValue:
    """Stands in for a callable inside a larger pickle: it unpickles as the
    callable, sent by value when workers cannot import it (``dumps_callable``).

    For callables pickled as part of something else (the pool's initializer
    with its arguments), which the standard pickler would reference by name.
    """

    __slots__ = ("data",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.data = bytes(dumps_callable(fn))

    def __reduce__(self) -> tuple[Any, ...]:
        return loads, (self.data,)


class RemoteTraceback(Exception):
    """The worker-side traceback text, chained as ``__cause__`` of a remote exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _rebuild_exception(exc: BaseException, tb: str) -> BaseException:
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class ExceptionWithTraceback:
    """Carries an exception to the parent, where it is rebuilt as itself with the
    worker-side traceback text as ``__cause__`` (the standard library's method)."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: BaseException, tb: str) -> None:
        self.exc = exc
        self.tb = tb

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_exception, (self.exc, self.tb)


def format_remote_traceback(exc: BaseException) -> str:
    """Format an exception with its traceback and chain, fenced for display."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f'\n"""\n{text}"""'


def exception_payload(exc: BaseException, task_name: str) -> object:
    """Return an object that pickles into ``exc`` (with its traceback) in the parent.

    An exception that cannot make the round trip (it fails to pickle or to
    unpickle) is replaced by a ``RemoteTaskError`` carrying its type name,
    message and traceback text, so that the failure is never lost.
    """
    tb = format_remote_traceback(exc)
    exc.__traceback__ = None  # frames hold locals that may not pickle, or be huge
    try:
        # Round trip here, in the worker, so a failure to unpickle is caught on
        # this side, where it can still be reported with the original's details.
        loads(dumps(ExceptionWithTraceback(exc, tb)))
    except BaseException as problem:
        type_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        try:
            message = str(exc)
        except BaseException:
            message = "<unprintable exception>"
        error = RemoteTaskError(
            f"task {task_name!r} raised {type_name}: {message} "
            f"(the exception could not be sent to the caller: {problem!r}; "
            "its traceback text is attached)",
            type_name=type_name,
            original_message=message,
            traceback_text=tb,
        )
        return ExceptionWithTraceback(error, tb)
    return ExceptionWithTraceback(exc, tb)


_DIRECTIONS = {
    "argument": (
        "an argument could not be pickled",
        "pass plain data, or give the type a __reduce__",
    ),
    "argument (unpickling in the worker)": (
        "an argument could not be unpickled in the worker",
        "make sure its type can be imported in the worker and rebuilt from its pickle",
    ),
    "result": (
        "the result could not be pickled",
        "return plain data, or give the type a __reduce__",
    ),
    "result (unpickling in the parent)": (
        "the result could not be unpickled in the parent",
        "make sure its type can be imported in the parent and rebuilt from its pickle",
    ),
    "exception": (
        "the exception it raised could not be pickled",
        "give the exception type a __reduce__, or raise a plainer one",
    ),
    "function": (
        "the function could not be pickled",
        "it goes by value (a lambda, a closure, or a function the workers cannot "
        "import) with what it uses: pass that object as an argument or create it in "
        "the worker (in the initializer), or move the function into a module the "
        "workers can import",
    ),
    "function (unpickling in the worker)": (
        "the function could not be loaded in the worker",
        "make sure its module can be imported in the worker",
    ),
    "initializer": (
        "the initializer or its arguments could not be pickled",
        "pass picklable arguments (queues, locks and shared memory from "
        "multiprocessing.get_context(start_method) travel) and an initializer the "
        "workers can import or that pickles by value",
    ),
}


def pickling_error(task_name: str, direction: str, cause: BaseException) -> TaskPicklingError:
    """Build the error for data that failed to cross the boundary, cause chained."""
    what, hint = _DIRECTIONS[direction]
    if direction == "result" and isinstance(cause, FutureCannotCrossError):
        # Typically a decorated task called inside a task, its Future returned.
        message = (
            f"task {task_name!r}: the result is (or holds) a concurrent.futures.Future, "
            "and a Future cannot be sent back to the caller: it belongs to the worker "
            "that made it. Calling a decorated task or subtask returns a Future; call "
            "its .sync(...) instead to run the plain function and get its value, or "
            "return future.result()"
        )
    else:
        message = f"task {task_name!r}: {what}: {type(cause).__name__}: {cause}; {hint}"
    error = TaskPicklingError(message, task_name=task_name, direction=direction)
    error.__cause__ = cause
    return error
