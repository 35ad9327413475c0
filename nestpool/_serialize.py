"""How things cross the process boundary: by reference when the worker can import
them, by value (cloudpickle) when it cannot, and exceptions with their traceback.

This module owns the wire encoding of callables, arguments, results and
exceptions. It must never import parent-side modules (it is loaded by workers)
and never swallow an error: every failure is turned into an exported
``TaskPicklingError`` or ``RemoteTaskError`` that names the task.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import pickle
import sys
import traceback
import types
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal

# cloudpickle ships no types (no stubs, no py.typed): see _CloudPickler below.
# The ignore is in the code, not in nestpool's mypy configuration, so that a
# user's mypy, which reads its own configuration, sees the package clean too.
import cloudpickle  # type: ignore[import-untyped]

from ._errors import RemoteTaskError, TaskPicklingError

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

#: The workers a pickled callable must reach: ``"spawned"`` (spawn and
#: forkserver: they run a script's ``__main__`` again, as ``__mp_main__``),
#: ``"forked"`` (they inherit ``__main__`` as it was at the fork) or
#: ``"portable"`` (processes that are not this program's children: Dask).
Reach = Literal["spawned", "forked", "portable"]
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


def needs_by_value(fn: object, reach: Reach = "spawned") -> bool:
    """True when a worker could not import ``fn`` by its module and qualified name.

    Lambdas, functions defined inside other functions, and functions of
    modules a fresh interpreter cannot import go by value with cloudpickle.
    A script's ``__main__`` is importable in a worker exactly as
    multiprocessing makes it so (spawn and forkserver run the main module as
    ``__mp_main__`` there, fork inherits it), so its module-level functions go
    by reference, as with ``ProcessPoolExecutor``; those defined under its
    ``if __name__ == "__main__":`` guard, and everything of a ``__main__``
    without a file (a notebook, ``python -c``, stdin), go by value, except to
    forked workers, which inherit ``__main__`` whole.

    Args:
        reach: the workers it must reach (see ``Reach``).
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not isinstance(module, str):
        return True
    if "<locals>" in qualname or "<lambda>" in qualname:
        return True
    if module in ("__main__", "__mp_main__"):
        if reach == "forked":
            # A forked worker inherits __main__ as it is: whatever is found
            # there by name (a notebook's, a guarded function) is there too.
            return not _found_in_main(qualname, fn)
        return reach == "portable" or not _main_exports(qualname)
    return not importable_by_name(module)


#: (the __main__ module, whether workers import it, names bound under its guard)
_main_facts: tuple[types.ModuleType, bool, frozenset[str]] | None = None


def _main_exports(qualname: str) -> bool:
    """True when a worker started by multiprocessing finds ``qualname`` in its
    ``__main__``: the main module has a file (or a module name) that
    multiprocessing runs again there, and the name is not bound only under
    the ``if __name__ == "__main__":`` guard, which does not run there."""
    global _main_facts
    main = sys.modules.get("__main__")
    if main is None:
        return False
    facts = _main_facts
    if facts is None or facts[0] is not main:
        facts = _main_facts = (main, _main_rerun_in_workers(main), _guarded_names(main))
    return facts[1] and qualname.partition(".")[0] not in facts[2]


def _found_in_main(qualname: str, fn: object) -> bool:
    """True when ``fn`` is what ``__main__`` holds at ``qualname``."""
    found: object = sys.modules.get("__main__")
    try:
        for part in qualname.split("."):
            found = getattr(found, part)
    except AttributeError:
        return False
    return found is fn or getattr(found, "__wrapped__", None) is fn


def _main_rerun_in_workers(main: types.ModuleType) -> bool:
    # The rule of multiprocessing.spawn.get_preparation_data and _fixup_main_*.
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None:
        return not (spec_name == "__main__" or spec_name.endswith(".__main__"))
    path = getattr(main, "__file__", None)
    if not isinstance(path, str):
        return False
    return os.path.splitext(os.path.basename(path))[0] != "ipython"


def _guarded_names(main: types.ModuleType) -> frozenset[str]:
    """Names the main module binds inside a top-level ``if`` that tests
    ``__name__`` (the entry point guard)."""
    path = getattr(main, "__file__", None)
    try:
        with open(str(path), "rb") as source:
            tree = ast.parse(source.read())
    except Exception:
        return frozenset()
    names: set[str] = set()
    for statement in tree.body:
        if not isinstance(statement, ast.If):
            continue
        if not any(
            isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(statement.test)
        ):
            continue
        for node in ast.walk(statement):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return frozenset(names)


#: module name -> (the module, whether a fresh interpreter finds it by name)
_importable: dict[str, tuple[types.ModuleType, bool]] = {}
#: modules this process registered with cloudpickle as pickled by value
_registered_by_value: set[str] = set()


def importable_by_name(module_name: str) -> bool:
    """True when a worker would find ``module_name`` by importing it: the module
    is loaded here, and the import system finds it again where it came from.

    False for a module made with ``types.ModuleType`` and ``exec``, and for one
    loaded from a file under a name that does not lead there (plugin loaders,
    ``importlib.util.spec_from_file_location``); those go by value. Decided
    once per module.
    """
    module = sys.modules.get(module_name)
    if module is None:
        return False
    cached = _importable.get(module_name)
    if cached is not None and cached[0] is module:
        return cached[1]
    try:
        found = _found_by_import(module_name, module)
    except Exception:  # pragma: no cover - a finder that fails: trust the name
        found = True
    _importable[module_name] = (module, found)
    return found


def _found_by_import(name: str, module: types.ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    if spec is None:
        # made at run time (types.ModuleType + exec), or the __main__ of `python -c`
        return getattr(module, "__file__", None) is not None
    origin = spec.origin if spec.has_location else None
    if origin is None:
        return True  # built-in, frozen, a namespace package: found by name
    parent_name = name.rpartition(".")[0]
    path = None
    if parent_name:
        if not importable_by_name(parent_name):
            return False
        path = getattr(sys.modules[parent_name], "__path__", None)
    # Ask the finders as a fresh import would, without sys.modules.
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            found = find_spec(name, path)
        except Exception:
            continue
        if found is not None:
            return found.origin is not None and _same_file(found.origin, origin)
    return False


def _same_file(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


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
