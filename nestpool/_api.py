"""The decorators: ``@process_task`` and ``@thread_subtask``.

What it owns: the wrapt proxies that keep a decorated function's identity
(``__name__``, ``__doc__``, ``__wrapped__``, ``inspect.signature``, ``help()``),
add ``.map``, ``.sync`` and ``.options`` (a variant with other options, which
pickles as its original plus those), bind correctly on methods, and decide
at each call where the call runs by one read of ``_routing``. How a
decorated function pickles and reaches a worker is ``_identity``'s; a
subtask's ``.map``, ``_subtask_map``'s.

It never touches processes or threads itself: routes do.
"""

from __future__ import annotations

import enum
import inspect
import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from . import _routing
from ._async import AsyncMapIterator
from ._errors import PoolClosedError
from ._identity import TaskMixin
from ._inline import map_inline, run_inline
from ._map_iterator import MapIterator, as_map_iterator
from ._progress import Progress, make_reporter, with_progress
from ._routing import TaskOptions
from ._signatures import DecoratedFunction
from ._subtask_map import check_map_options, subtask_amap, subtask_map
from ._typing import P, R

__all__ = ["ProcessTask", "ThreadSubtask", "process_task", "thread_subtask"]

P2 = ParamSpec("P2")
S = TypeVar("S")

if TYPE_CHECKING:

    class _FunctionWrapper:
        """What the type checker needs to know of wrapt's proxies."""

        __wrapped__: Any
        __name__: str
        __qualname__: str
        _self_parent: Any
        _self_instance: Any
        _self_owner: Any
        _self_binding: str

        def __init__(self, wrapped: Any, wrapper: Any) -> None: ...

    _BoundFunctionWrapper = _FunctionWrapper
else:
    from wrapt import BoundFunctionWrapper as _BoundFunctionWrapper
    from wrapt import FunctionWrapper as _FunctionWrapper


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


def _check_decorated(decorator: str, fn: object) -> None:
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
    # An object whose calls return coroutines: its class's __call__ is async.
    call = None if inspect.isroutine(plain) else inspect.getattr_static(real_type, "__call__", None)
    if (
        inspect.iscoroutinefunction(plain)
        or inspect.isasyncgenfunction(plain)
        or (call is not None and inspect.iscoroutinefunction(call))
    ):
        raise TypeError(
            f"@{decorator} cannot decorate {getattr(plain, '__qualname__', plain)!r}: it is "
            "an async function, and nestpool runs plain functions in processes and "
            "threads. Decorate a synchronous function (one that calls asyncio.run() "
            "if it must), and await nestpool's futures with asyncio.wrap_future()."
        )


def _args_with_instance(instance: Any, binding: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # wrapt hands the bound object separately; the plain function wants it first.
    if instance is not None and binding in ("function", "instancemethod", "classmethod"):
        return (instance, *args)
    return args


def _make_process_call(options: TaskOptions, binding: str) -> Callable[..., Any]:
    def call(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        route = _routing._current
        if instance is not None:
            args = _args_with_instance(instance, binding, args)
        if route is None:
            return run_inline(options.fn, args, kwargs)
        return route.submit_task(options, args, kwargs)

    return call


def _make_subtask_call(options: TaskOptions) -> Callable[..., Any]:
    def call(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        route = _routing._current
        pool = None if route is None else route.subtask_pool()
        if pool is not None:
            try:
                return pool.submit(wrapped, args, kwargs)
            except PoolClosedError:
                pass  # the pool is closing: the call runs here, as with no pool
        return run_inline(wrapped, args, kwargs)

    return call


def _process_map(
    options: TaskOptions,
    iterables: tuple[Iterable[Any], ...],
    ordered: bool,
    chunksize: int | None,
    buffersize: int | None,
    progress: Progress = None,
) -> MapIterator[Any]:
    check_map_options(chunksize, buffersize)
    reporter = make_reporter(progress, iterables, options.name)  # before any work starts
    route = _routing._current
    if route is None:
        iterator = map_inline(options.fn, iterables)
    else:
        iterator = as_map_iterator(
            route.map_task(options, iterables, ordered, chunksize, buffersize)
        )
    return with_progress(iterator, reporter)


def _process_amap(
    options: TaskOptions,
    iterables: tuple[Iterable[Any], ...],
    ordered: bool,
    chunksize: int | None,
    buffersize: int | None,
    progress: Progress,
) -> AsyncMapIterator[Any]:
    reporter = make_reporter(progress, iterables, options.name)
    iterator = _process_map(options, iterables, ordered, chunksize, buffersize)
    return AsyncMapIterator(iterator, reporter)


def _with_instance(bound: Any, iterables: tuple[Iterable[Any], ...]) -> tuple[Iterable[Any], ...]:
    first = _bound_first(bound)
    if first:
        return (itertools.repeat(first[0]), *iterables)
    return iterables


def _bound_first(bound: Any) -> tuple[Any, ...]:
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


class ProcessTask(DecoratedFunction, TaskMixin, _FunctionWrapper, Generic[P, R]):
    """A function decorated with ``@process_task``: CPU-heavy work for a worker.

    Calling it returns a ``concurrent.futures.Future[R]``; where the call runs
    follows the routing table (no pool: now, inline; a pool open: a worker
    process; inside a worker: inline there). ``.map`` collates values;
    ``.amap`` does it for asyncio; ``.sync`` calls the plain function here and
    returns ``R``; ``.options(timeout=..., retries=...)`` gives the same task
    with other options.

    Example:
        >>> @process_task
        ... def crunch(batch: list[str]) -> int:
        ...     return sum(len(page) for page in fetch.map(batch))
        >>> with Pool():
        ...     future = crunch(batch)           # Future[int], run in a worker
        ...     totals = list(crunch.map(batches))
        >>> crunch.sync(batch)                   # int, run here
    """

    _self_kind = "process"

    def __init__(self, fn: Callable[P, R], options: TaskOptions, binding: str) -> None:
        super().__init__(fn, _make_process_call(options, binding))
        self._self_options = options
        self._self_binding_kind = binding

    if TYPE_CHECKING:
        # The checker's view of wrapt's binding (docs/typing.md): through the
        # class, unchanged; through an instance, the first parameter is bound.
        # The last overload serves static methods (`@staticmethod` above or
        # below): checkers look them up through __get__ too, and wrapt binds
        # nothing for them.
        __wrapped__: Callable[P, R]

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> ProcessTask[P, R]: ...
        @overload
        def __get__(
            self: ProcessTask[Concatenate[S, P2], R],
            instance: S,
            owner: type[Any] | None = None,
        ) -> ProcessTask[P2, R]: ...
        @overload
        def __get__(
            self, instance: object, owner: type[Any] | None = None
        ) -> ProcessTask[P, R]: ...
        def __get__(self, instance: Any, owner: Any = None) -> Any: ...

    def _self_map(
        self,
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        progress: Progress,
    ) -> MapIterator[Any]:
        return _process_map(self._self_options, iterables, ordered, chunksize, buffersize, progress)

    def _self_amap(
        self,
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        progress: Progress,
    ) -> AsyncMapIterator[Any]:
        return _process_amap(
            self._self_options, iterables, ordered, chunksize, buffersize, progress
        )

    def sync(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the plain function here and now; return its value (or raise).

        Args:
            *args: the function's positional arguments.
            **kwargs: the function's keyword arguments.

        Returns:
            The function's value; its exception is raised, not put in a future.

        Example:
            >>> crunch.sync(batch)   # no future, no pool: a plain call
        """
        return self._self_options.fn(*args, **kwargs)  # type: ignore[no-any-return]

    @property
    def task_name(self) -> str:
        """The name used in errors and logs (``name=``, or the qualified name).

        Example:
            >>> crunch.task_name
            'crunch'
        """
        return self._self_options.name

    @property
    def timeout(self) -> float | None:
        """The ``timeout=`` in seconds, or None.

        Example:
            >>> process_task(timeout=30)(crunch.__wrapped__).timeout
            30.0
        """
        return self._self_options.timeout

    @property
    def retries(self) -> int:
        """The ``retries=``: more tries for a call whose worker died or that
        ran past its timeout.

        Example:
            >>> process_task(retries=3)(crunch.__wrapped__).retries
            3
        """
        return self._self_options.retries

    def options(self, *, timeout: float | None = _KEEP, retries: int = _KEEP) -> ProcessTask[P, R]:
        """This task with other options, for one call, one map, or to keep.

        The variant has the same function, name and identity (``__name__``,
        ``__wrapped__``, signature); only the options given change. It runs,
        routes and pickles like the original (by reference to it, plus the
        options), so it can be sent to workers and called inside them.

        Args:
            timeout: seconds one call may run in a worker (None: no limit);
                as ``@process_task(timeout=...)``. Omitted: the task's own.
            retries: more tries for a call whose worker died or that ran
                past its timeout; as ``@process_task(retries=...)``.
                Omitted: the task's own.

        Returns:
            A ``ProcessTask[P, R]`` with those options.

        Raises:
            TypeError: an unknown option, or a value of the wrong type.
            ValueError: a timeout that is not positive, or negative retries.

        Example:
            >>> with Pool():
            ...     future = crunch.options(timeout=5.0)(batch)
            ...     totals = list(crunch.options(retries=2).map(batches))
        """
        return self._self_variant(timeout, retries)

    def _self_variant(self, timeout: float | None, retries: int) -> ProcessTask[P, R]:
        options = self._self_options
        new_timeout = options.timeout if timeout is _KEEP else _check_timeout(timeout)
        new_retries = options.retries if retries is _KEEP else _check_retries(retries)
        origin = self if self._self_origin is None else self._self_origin
        variant_options = origin._self_options.variant(new_timeout, new_retries)
        func: Callable[P, R] = origin.__wrapped__
        variant: ProcessTask[P, R] = ProcessTask(func, variant_options, origin._self_binding_kind)
        variant._self_origin = origin
        return variant


class BoundProcessTask(_BoundFunctionWrapper):
    """A ``@process_task`` method bound to its instance (``obj.method``)."""

    def map(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: Progress = None,
    ) -> MapIterator[Any]:
        """``ProcessTask.map`` for a bound method: the instance goes first."""
        iterables = _with_instance(self, iterables)
        return _process_map(
            self._self_parent._self_options, iterables, ordered, chunksize, buffersize, progress
        )

    def amap(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: Progress = None,
    ) -> AsyncMapIterator[Any]:
        """``ProcessTask.amap`` for a bound method: the instance goes first."""
        iterables = _with_instance(self, iterables)
        return _process_amap(
            self._self_parent._self_options, iterables, ordered, chunksize, buffersize, progress
        )

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain method here and now; return its value."""
        return self.__wrapped__(*args, **kwargs)

    def options(self, *, timeout: Any = _KEEP, retries: Any = _KEEP) -> Any:
        """``ProcessTask.options`` for a bound method: the variant, bound alike."""
        variant = self._self_parent._self_variant(timeout, retries)
        return variant.__get__(self._self_instance, self._self_owner)


class ThreadSubtask(DecoratedFunction, TaskMixin, _FunctionWrapper, Generic[P, R]):
    """A function decorated with ``@thread_subtask``: IO-bound work for threads.

    Calling it returns a ``concurrent.futures.Future[R]``: with a pool open it
    runs on the pool's thread pool here; inside a worker, on that worker's own
    persistent thread pool; with no pool, now, inline. A thread that waits on
    a subtask nobody has started runs it itself, so waiting never deadlocks.

    Example:
        >>> @thread_subtask
        ... def fetch(url: str) -> bytes:
        ...     with urllib.request.urlopen(url) as response:
        ...         return response.read()
        >>> future = fetch(url)              # Future[bytes]
        >>> pages = list(fetch.map(urls))    # in input order, fetched concurrently
    """

    _self_kind = "subtask"

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        super().__init__(fn, _make_subtask_call(options))
        self._self_options = options

    if TYPE_CHECKING:
        __wrapped__: Callable[P, R]

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

        @overload
        def __get__(
            self, instance: None, owner: type[Any] | None = None
        ) -> ThreadSubtask[P, R]: ...
        @overload
        def __get__(
            self: ThreadSubtask[Concatenate[S, P2], R],
            instance: S,
            owner: type[Any] | None = None,
        ) -> ThreadSubtask[P2, R]: ...
        @overload
        def __get__(
            self, instance: object, owner: type[Any] | None = None
        ) -> ThreadSubtask[P, R]: ...
        def __get__(self, instance: Any, owner: Any = None) -> Any: ...

    def _self_map(
        self,
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        progress: Progress,
    ) -> MapIterator[Any]:
        name = self._self_options.name
        return subtask_map(
            self.__wrapped__, iterables, ordered, chunksize, buffersize, progress, name
        )

    def _self_amap(
        self,
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        progress: Progress,
    ) -> AsyncMapIterator[Any]:
        name = self._self_options.name
        return subtask_amap(
            self.__wrapped__, iterables, ordered, chunksize, buffersize, progress, name
        )

    def sync(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the plain function here and now; return its value (or raise).

        Args:
            *args: the function's positional arguments.
            **kwargs: the function's keyword arguments.

        Returns:
            The function's value; its exception is raised, not put in a future.

        Example:
            >>> page = fetch.sync(url)   # bytes, fetched in this thread
        """
        return self.__wrapped__(*args, **kwargs)

    @property
    def task_name(self) -> str:
        """The name used in errors and logs (``name=``, or the qualified name).

        Example:
            >>> crunch.task_name
            'crunch'
        """
        return self._self_options.name


class BoundThreadSubtask(_BoundFunctionWrapper):
    """A ``@thread_subtask`` method bound to its instance."""

    def map(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: Progress = None,
    ) -> MapIterator[Any]:
        """``ThreadSubtask.map`` for a bound method."""
        name = self._self_parent._self_options.name
        return subtask_map(
            self.__wrapped__, iterables, ordered, chunksize, buffersize, progress, name
        )

    def amap(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: Progress = None,
    ) -> AsyncMapIterator[Any]:
        """``ThreadSubtask.amap`` for a bound method."""
        name = self._self_parent._self_options.name
        return subtask_amap(
            self.__wrapped__, iterables, ordered, chunksize, buffersize, progress, name
        )

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain method here and now; return its value."""
        return self.__wrapped__(*args, **kwargs)


class _WrappedAnnotations(dict[str, Any]):
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


if not TYPE_CHECKING:
    ProcessTask.__bound_function_wrapper__ = BoundProcessTask
    ThreadSubtask.__bound_function_wrapper__ = BoundThreadSubtask
    ProcessTask.__annotations__ = _WrappedAnnotations()
    ThreadSubtask.__annotations__ = _WrappedAnnotations()


def _options(
    kind: str, fn: Any, name: str | None, timeout: float | None
) -> tuple[TaskOptions, Callable[..., Any]]:
    plain = _plain_function(fn)
    if name is None:
        qualname: str | None = getattr(plain, "__qualname__", None)
        name = qualname or repr(plain)
    return TaskOptions(plain, name, timeout, kind), plain


def _binding(fn: object) -> str:
    if isinstance(fn, staticmethod):
        return "staticmethod"
    if isinstance(fn, classmethod):
        return "classmethod"
    return "function"


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    # Checked at run time too, for callers that are not type-checked.
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def _check_retries(retries: int) -> int:
    # Checked at run time too, for callers that are not type-checked.
    if isinstance(retries, bool) or not isinstance(retries, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"retries must be an int, got {type(retries).__name__}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    return retries


def _check_name(name: object) -> None:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")


@overload
def process_task(fn: Callable[P, R], /) -> ProcessTask[P, R]: ...
@overload
def process_task(
    *, timeout: float | None = None, retries: int = 0, name: str | None = None
) -> Callable[[Callable[P, R]], ProcessTask[P, R]]: ...
def process_task(
    fn: Callable[P, R] | EllipsisType = ...,
    /,
    *,
    timeout: float | None = None,
    retries: int = 0,
    name: str | None = None,
) -> ProcessTask[P, R] | Callable[[Callable[P, R]], ProcessTask[P, R]]:
    """Mark a function as a process task: CPU-heavy work for a worker process.

    Use bare (``@process_task``) or with options
    (``@process_task(timeout=30.0, retries=2, name="parse")``).

    Args:
        fn (Callable[P, R]): the function, in bare use (``@process_task``);
            without it, the call returns the decorator, with its options.
        timeout: seconds one call may run in a worker; past it the worker is
            stopped and replaced and the future fails with ``TaskTimeoutError``.
        retries: how many more times a call runs, each time on another
            worker, when its worker died or it ran past ``timeout`` (never
            when it raised: that is its answer); in a map, per item. The last
            error says how many tries were made. Only for idempotent tasks:
            a retried call may have done part of its work already.
        name: the task's name in errors and logs (default: its qualified name).

    Returns:
        A ``ProcessTask``: calling it returns ``Future[R]``; ``.map`` returns a
            ``MapIterator[R]``; ``.sync`` calls the plain function.

    Raises:
        TypeError: ``fn`` is not callable, or is an async function.
        ValueError: ``timeout`` is not a positive number, or ``retries`` is
            negative.

    Example:
        >>> @process_task
        ... def crunch(urls: list[str]) -> int:
        ...     return sum(score(page) for page in fetch.map(urls))
        >>> @process_task(timeout=60.0, retries=2)   # idempotent: safe to re-run
        ... def convert(path: str) -> str: ...
    """
    timeout = _check_timeout(timeout)
    retries = _check_retries(retries)
    _check_name(name)

    def decorate(func: Callable[P, R]) -> ProcessTask[P, R]:
        _check_decorated("process_task", func)
        options, _plain = _options("process", func, name, timeout)
        options.retries = retries
        task: ProcessTask[P, R] = ProcessTask(func, options, _binding(func))
        options.factory = task._self_payload
        return task

    if not isinstance(fn, EllipsisType):
        # process_task(None) decorates None: a TypeError, not a decorator
        return decorate(fn)
    return decorate


@overload
def thread_subtask(fn: Callable[P, R], /) -> ThreadSubtask[P, R]: ...
@overload
def thread_subtask(
    *, name: str | None = None
) -> Callable[[Callable[P, R]], ThreadSubtask[P, R]]: ...
def thread_subtask(
    fn: Callable[P, R] | EllipsisType = ...,
    /,
    *,
    name: str | None = None,
) -> ThreadSubtask[P, R] | Callable[[Callable[P, R]], ThreadSubtask[P, R]]:
    """Mark a function as a thread subtask: IO-bound work for a thread pool.

    Use bare (``@thread_subtask``) or with a name (``@thread_subtask(name=...)``);
    there is no ``timeout``: a thread cannot be stopped.

    Args:
        fn (Callable[P, R]): the function, in bare use (``@thread_subtask``);
            without it, the call returns the decorator, with its options.
        name: the subtask's name in errors and logs.

    Returns:
        A ``ThreadSubtask``: calling it returns ``Future[R]``, run on the thread
            pool of the process where the call happens; ``.map`` returns a
            ``MapIterator[R]``; ``.sync`` calls the plain function.

    Raises:
        TypeError: ``fn`` is not callable, or is an async function.

    Example:
        >>> @thread_subtask
        ... def fetch(url: str) -> bytes:
        ...     with urllib.request.urlopen(url) as response:
        ...         return response.read()
    """
    _check_name(name)

    def decorate(func: Callable[P, R]) -> ThreadSubtask[P, R]:
        _check_decorated("thread_subtask", func)
        options, _plain = _options("subtask", func, name, None)
        task: ThreadSubtask[P, R] = ThreadSubtask(func, options)
        options.factory = task._self_payload
        return task

    if not isinstance(fn, EllipsisType):
        # process_task(None) decorates None: a TypeError, not a decorator
        return decorate(fn)
    return decorate
