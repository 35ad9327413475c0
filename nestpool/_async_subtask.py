"""Async subtasks: ``@thread_subtask`` on an ``async def``.

What it owns: the wrapt proxy of an async subtask (identity, ``.map``,
``.amap``, ``.sync``, binding on methods) and the decision at each call,
the routing table with this process's event loop in place of its thread
pool: with a pool open here, or inside a worker, the coroutine is scheduled
on the process's subtask loop (``_subtask_loop``); with no pool (or
``threads=0``) it runs there to completion while the caller waits. Its map
keeps up to ``buffersize`` (else ``ASYNC_MAP_IN_FLIGHT``) coroutines in
flight, whatever the number of threads.

It never touches processes or the thread pool; it never blocks the loop's
own thread (``_subtask_loop`` refuses such waits).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Concatenate, Generic, overload

from . import _routing
from ._collate import ChunkedMap, ChunkSizer, Item
from ._decorating import P2, S, WrappedAnnotations
from ._identity import TaskMixin
from ._inline import map_inline
from ._map_iterator import MapIterator
from ._progress import Progress, make_reporter, with_progress
from ._routing import TaskOptions
from ._signatures import BoundCollating, DecoratedFunction
from ._subtask_loop import (
    ASYNC_MAP_IN_FLIGHT,
    on_loop_thread,
    refuse_wait_on_loop,
    run_now,
    this_process_loop,
)
from ._subtask_map import check_map_options
from ._subtask_pool import SubtaskPool
from ._typing import P, R

if TYPE_CHECKING:
    from ._decorating import FunctionWrapper as _BoundFunctionWrapper
    from ._decorating import FunctionWrapper as _FunctionWrapper
else:
    from wrapt import BoundFunctionWrapper as _BoundFunctionWrapper
    from wrapt import FunctionWrapper as _FunctionWrapper

__all__ = ["AsyncSubtask", "BoundAsyncSubtask", "async_map"]

_SYNC_ON_LOOP = (
    "{name}.sync() cannot run on nestpool's event loop thread: the loop would wait "
    "on itself. In a coroutine, write 'await asyncio.wrap_future({name}(...))'."
)


def _held_by() -> SubtaskPool | None:
    """The subtask pool whose work an async subtask called here is: that of
    the pool open in this process, or of this worker; None with no pool (or
    one with threads=0, which runs subtasks inline): the coroutine then runs
    to completion at the call."""
    return _routing.subtask_pool_here()


def _call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    pool = _held_by()
    if pool is None:
        return run_now(wrapped, args, kwargs)
    future = this_process_loop().submit(wrapped, args, kwargs)
    pool.hold(future)  # leaving the pool's `with` block waits for it
    return future


def _value_now(fn: Callable[..., Any], *args: Any) -> Any:
    """One item of an inline map: the coroutine run to completion, its value."""
    return run_now(fn, args, {}).result()


def async_map(
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    ordered: bool,
    chunksize: int | None,
    buffersize: int | None,
    progress: Progress = None,
    name: str = "",
    *,
    from_amap: bool = False,
) -> MapIterator[Any]:
    """The map of an async subtask (see the module docstring)."""
    check_map_options(chunksize, buffersize)
    if not from_amap:
        # Iterating it here could only block the loop on its own work.
        refuse_wait_on_loop(f"{name}.map()")
    reporter = make_reporter(progress, iterables, name)  # before any work starts
    pool = _held_by()
    if pool is None:
        return with_progress(map_inline(functools.partial(_value_now, fn), iterables), reporter)
    submit = this_process_loop().submit
    hold = pool.hold

    def submit_unit(items: Sequence[Item]) -> tuple[Future[Any], bool]:
        future = submit(fn, items[0], {})
        hold(future)
        return future, False

    # chunksize has no use here: each item is a coroutine of its own, and
    # submitting one costs no thread hop (the loop drains them in batches).
    iterator: ChunkedMap[Any] = ChunkedMap(
        iterables,
        submit_unit,
        ChunkSizer(1, None, 1),
        ordered=ordered,
        buffersize=buffersize,
        max_units=ASYNC_MAP_IN_FLIGHT,
        merge_ready=True,
    )
    return with_progress(iterator, reporter)


class AsyncSubtask(DecoratedFunction, TaskMixin, _FunctionWrapper, Generic[P, R]):
    """An ``async def`` decorated with ``@thread_subtask``: IO work for an event loop.

    Calling it returns a ``concurrent.futures.Future[R]``, ``R`` being what the
    coroutine returns: with a pool open it is scheduled on this process's
    event loop; inside a worker, on that worker's own persistent event loop
    (one per process, on a thread of its own, kept for the process's life);
    with no pool, it runs now, to completion. Cancelling the future cancels
    the coroutine. In a coroutine running on that loop, await the future with
    ``await asyncio.wrap_future(future)``: ``result()`` there raises
    ``RuntimeError`` rather than block the loop on itself.

    Example:
        >>> @thread_subtask
        ... async def fetch(client: httpx.AsyncClient, url: str) -> bytes:
        ...     response = await client.get(url)
        ...     return response.content
        >>> future = fetch(client, url)                        # Future[bytes]
        >>> pages = list(fetch.map(repeat(client), urls))      # all in flight at once
    """

    _self_kind = "subtask"

    def __init__(self, fn: Callable[P, Coroutine[Any, Any, R]], options: TaskOptions) -> None:
        super().__init__(fn, _call)
        self._self_options = options

    if TYPE_CHECKING:
        __wrapped__: Callable[P, Coroutine[Any, Any, R]]

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> AsyncSubtask[P, R]: ...
        @overload
        def __get__(
            self: AsyncSubtask[Concatenate[S, P2], R],
            instance: S,
            owner: type[Any] | None = None,
        ) -> AsyncSubtask[P2, R]: ...
        @overload
        def __get__(
            self, instance: object, owner: type[Any] | None = None
        ) -> AsyncSubtask[P, R]: ...
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
        return async_map(
            bound.__wrapped__,
            iterables,
            ordered,
            chunksize,
            buffersize,
            progress,
            name,
            from_amap=from_amap,
        )

    def sync(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the coroutine to completion here and now; return its value (or raise).

        It runs on this process's event loop while the calling thread waits,
        as a call with no pool open does.

        Args:
            *args: the function's positional arguments.
            **kwargs: the function's keyword arguments.

        Returns:
            What the coroutine returns; its exception is raised, not put in a
                future.

        Raises:
            RuntimeError: called on the event loop's own thread (in a coroutine
                running there, await the call's future instead).

        Example:
            >>> page = fetch.sync(client, url)   # bytes
        """
        if on_loop_thread():
            raise RuntimeError(_SYNC_ON_LOOP.format(name=self._self_options.name))
        future: Future[R] = run_now(self.__wrapped__, args, kwargs)
        return future.result()

    @property
    def task_name(self) -> str:
        """The name used in errors and logs (``name=``, or the qualified name).

        Example:
            >>> fetch.task_name
            'fetch'
        """
        return self._self_options.name


class BoundAsyncSubtask(BoundCollating, _BoundFunctionWrapper):
    """An async ``@thread_subtask`` method bound to its instance."""

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        """Run the bound coroutine method to completion here; return its value."""
        if on_loop_thread():
            raise RuntimeError(_SYNC_ON_LOOP.format(name=self._self_parent._self_options.name))
        return run_now(self.__wrapped__, args, kwargs).result()


if not TYPE_CHECKING:
    AsyncSubtask.__bound_function_wrapper__ = BoundAsyncSubtask
    AsyncSubtask.__annotations__ = WrappedAnnotations()
