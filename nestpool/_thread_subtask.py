"""``@thread_subtask``: IO-bound work for the calling process's thread pool.

What it owns: the wrapt proxy of a subtask (identity, ``.map``, ``.amap``,
``.sync``, binding on methods) and the decision at each call: the thread
pool of the process's open pool or worker, else a run here and now. An
``async def`` becomes an ``AsyncSubtask`` (``_async_subtask``) instead. A
subtask's ``.map`` is ``_subtask_map``'s; the thread pool is
``_subtask_pool``'s.

It never touches processes; threads only through the subtask pool.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Protocol, overload

from . import _routing
from ._async_subtask import AsyncSubtask
from ._decorating import (
    P2,
    S,
    WrappedAnnotations,
    check_decorated,
    check_name,
    is_async,
    make_options,
)
from ._errors import PoolClosedError
from ._identity import TaskMixin
from ._inline import run_inline
from ._map_iterator import MapIterator
from ._progress import Progress
from ._routing import TaskOptions
from ._signatures import BoundCollating, DecoratedFunction
from ._subtask_map import subtask_map
from ._typing import P, R

if TYPE_CHECKING:
    from ._decorating import FunctionWrapper as _BoundFunctionWrapper
    from ._decorating import FunctionWrapper as _FunctionWrapper
else:
    from wrapt import BoundFunctionWrapper as _BoundFunctionWrapper
    from wrapt import FunctionWrapper as _FunctionWrapper

__all__ = [
    "AsyncSubtask",
    "BoundThreadSubtask",
    "SubtaskDecorator",
    "ThreadSubtask",
    "thread_subtask",
]


def _make_subtask_call(options: TaskOptions) -> Callable[..., Any]:
    def call(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        pool = _routing.subtask_pool_here()
        if pool is not None:
            try:
                return pool.submit(wrapped, args, kwargs)
            except PoolClosedError:
                pass  # the pool is closing: the call runs here, as with no pool
        return run_inline(wrapped, args, kwargs)

    return call


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

    def _self_collate(
        self,
        bound: Any,
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        progress: Progress,
        from_amap: bool,
    ) -> MapIterator[Any]:
        name = self._self_options.name
        return subtask_map(
            bound.__wrapped__, iterables, ordered, chunksize, buffersize, progress, name
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


class BoundThreadSubtask(BoundCollating, _BoundFunctionWrapper):
    """A ``@thread_subtask`` method bound to its instance."""


if not TYPE_CHECKING:
    ThreadSubtask.__bound_function_wrapper__ = BoundThreadSubtask
    ThreadSubtask.__annotations__ = WrappedAnnotations()


class SubtaskDecorator(Protocol):
    """What ``thread_subtask(name=...)`` returns: the decorator, with its options."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncSubtask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> ThreadSubtask[P, R]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Any: ...


# The async overload comes first: a coroutine function is also a Callable[P, R]
# (with R a coroutine), and a call must give Future[R] of the awaited R. (mypy
# flags the overlap; the first match is the one that applies, as intended.)
@overload
def thread_subtask(  # type: ignore[overload-overlap]
    fn: Callable[P, Coroutine[Any, Any, R]], /
) -> AsyncSubtask[P, R]: ...
@overload
def thread_subtask(fn: Callable[P, R], /) -> ThreadSubtask[P, R]: ...
@overload
def thread_subtask(*, name: str | None = None) -> SubtaskDecorator: ...
def thread_subtask(
    fn: Callable[..., Any] | EllipsisType = ...,
    /,
    *,
    name: str | None = None,
) -> Any:
    """Mark a function as a subtask: IO-bound work for a thread pool (or an event loop).

    Use bare (``@thread_subtask``) or with a name (``@thread_subtask(name=...)``);
    there is no ``timeout``: a thread cannot be stopped.

    On an ``async def`` it makes an async subtask (``AsyncSubtask``): the same
    routing, with each process's own persistent event loop in place of its
    thread pool, and ``Future[R]`` of what the coroutine returns.

    Args:
        fn (Callable[P, R]): the function, in bare use (``@thread_subtask``);
            without it, the call returns the decorator, with its options.
        name: the subtask's name in errors and logs.

    Returns:
        A ``ThreadSubtask`` (an ``AsyncSubtask`` for an ``async def``): calling
            it returns ``Future[R]``, run on the thread pool (the event loop) of
            the process where the call happens; ``.map`` returns a
            ``MapIterator[R]``; ``.sync`` calls the plain function (runs the
            coroutine to completion) and returns ``R``.

    Raises:
        TypeError: ``fn`` is not callable, or is an async generator function.

    Example:
        >>> @thread_subtask
        ... def fetch(url: str) -> bytes:
        ...     with urllib.request.urlopen(url) as response:
        ...         return response.read()
        >>> @thread_subtask
        ... async def fetch_async(client: httpx.AsyncClient, url: str) -> bytes:
        ...     return (await client.get(url)).content
    """
    check_name(name)

    def decorate(func: Callable[..., Any]) -> Any:
        check_decorated("thread_subtask", func)
        options, _plain = make_options("subtask", func, name, None)
        task: ThreadSubtask[..., Any] | AsyncSubtask[..., Any]
        if is_async(func):
            task = AsyncSubtask(func, options)
        else:
            task = ThreadSubtask(func, options)
        options.factory = task._self_payload
        return task

    if not isinstance(fn, EllipsisType):
        # process_task(None) decorates None: a TypeError, not a decorator
        return decorate(fn)
    return decorate
