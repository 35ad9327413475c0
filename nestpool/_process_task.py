"""``@process_task``: CPU-heavy work for a worker process.

What it owns: the wrapt proxy that keeps a decorated function's identity
(``__name__``, ``__doc__``, ``__wrapped__``, ``inspect.signature``,
``help()``), adds ``.map``, ``.amap``, ``.sync`` and ``.options`` (a variant
with other options, which pickles as its original plus those), binds
correctly on methods, and decides at each call where the call runs by one
read of ``_routing``. How a decorated function pickles and reaches a worker
is ``_identity``'s.

It never touches processes or threads itself: routes do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, overload

from . import _routing
from ._decorating import (
    _KEEP,
    P2,
    S,
    WrappedAnnotations,
    args_with_instance,
    binding_of,
    check_decorated,
    check_flag,
    check_name,
    check_retries,
    check_timeout,
    make_options,
    with_instance,
)
from ._identity import TaskMixin
from ._inline import map_inline, run_inline
from ._map_iterator import MapIterator, as_map_iterator
from ._progress import Progress, make_reporter, with_progress
from ._routing import TaskOptions
from ._signatures import BoundCollating, DecoratedFunction
from ._subtask_map import check_map_options
from ._typing import P, R

if TYPE_CHECKING:
    from ._decorating import FunctionWrapper as _BoundFunctionWrapper
    from ._decorating import FunctionWrapper as _FunctionWrapper
else:
    from wrapt import BoundFunctionWrapper as _BoundFunctionWrapper
    from wrapt import FunctionWrapper as _FunctionWrapper

__all__ = ["BoundProcessTask", "ProcessTask", "process_task"]


def _make_process_call(options: TaskOptions, binding: str) -> Callable[..., Any]:
    def call(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        route = _routing._current
        if instance is not None:
            args = args_with_instance(instance, binding, args)
        if route is not None:
            try:
                return route.submit_task(options, args, kwargs)
            except ReferenceError:  # the pool was dropped this instant: none is open
                pass
        return run_inline(options.fn, args, kwargs)

    return call


def _process_map(
    options: TaskOptions,
    bound: Any,
    iterables: tuple[Iterable[Any], ...],
    ordered: bool,
    chunksize: int | None,
    buffersize: int | None,
    progress: Progress,
) -> MapIterator[Any]:
    check_map_options(chunksize, buffersize)
    reporter = make_reporter(progress, iterables, options.name)  # before any work starts
    iterables = with_instance(bound, iterables)
    route = _routing._current
    iterator: MapIterator[Any] | None = None
    if route is not None:
        try:
            iterator = as_map_iterator(
                route.map_task(options, iterables, ordered, chunksize, buffersize)
            )
        except ReferenceError:  # the pool was dropped this instant: none is open
            pass
    if iterator is None:
        iterator = map_inline(options.fn, iterables)
    return with_progress(iterator, reporter)


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
        return _process_map(
            self._self_options, bound, iterables, ordered, chunksize, buffersize, progress
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

    @property
    def stop_on_cancel(self) -> bool:
        """The ``stop_on_cancel=``: ``cancel()`` on a running call's future
        stops its worker (see ``nestpool.stop``).

        Example:
            >>> crunch.options(stop_on_cancel=True).stop_on_cancel
            True
        """
        return self._self_options.stop_on_cancel

    def options(
        self,
        *,
        timeout: float | None = _KEEP,
        retries: int = _KEEP,
        stop_on_cancel: bool = _KEEP,
    ) -> ProcessTask[P, R]:
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
            stop_on_cancel: ``cancel()`` on a running call's future stops
                its worker, as ``nestpool.stop`` does, so that asyncio's
                cancellation reaches it; as
                ``@process_task(stop_on_cancel=...)``. Omitted: the task's own.

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
        return self._self_variant(timeout, retries, stop_on_cancel)

    def _self_variant(
        self, timeout: float | None, retries: int, stop_on_cancel: bool = _KEEP
    ) -> ProcessTask[P, R]:
        options = self._self_options
        new_timeout = options.timeout if timeout is _KEEP else check_timeout(timeout)
        new_retries = options.retries if retries is _KEEP else check_retries(retries)
        new_stop = options.stop_on_cancel if stop_on_cancel is _KEEP else check_flag(stop_on_cancel)
        origin = self if self._self_origin is None else self._self_origin
        variant_options = origin._self_options.variant(new_timeout, new_retries, new_stop)
        func: Callable[P, R] = origin.__wrapped__
        variant: ProcessTask[P, R] = ProcessTask(func, variant_options, origin._self_binding_kind)
        variant._self_origin = origin
        return variant


class BoundProcessTask(BoundCollating, _BoundFunctionWrapper):
    """A ``@process_task`` method bound to its instance (``obj.method``)."""

    def options(
        self, *, timeout: Any = _KEEP, retries: Any = _KEEP, stop_on_cancel: Any = _KEEP
    ) -> Any:
        """``ProcessTask.options`` for a bound method: the variant, bound alike."""
        variant = self._self_parent._self_variant(timeout, retries, stop_on_cancel)
        return variant.__get__(self._self_instance, self._self_owner)


if not TYPE_CHECKING:
    ProcessTask.__bound_function_wrapper__ = BoundProcessTask
    ProcessTask.__annotations__ = WrappedAnnotations()


@overload
def process_task(fn: Callable[P, R], /) -> ProcessTask[P, R]: ...
@overload
def process_task(
    *,
    timeout: float | None = None,
    retries: int = 0,
    stop_on_cancel: bool = False,
    name: str | None = None,
) -> Callable[[Callable[P, R]], ProcessTask[P, R]]: ...
def process_task(
    fn: Callable[P, R] | EllipsisType = ...,
    /,
    *,
    timeout: float | None = None,
    retries: int = 0,
    stop_on_cancel: bool = False,
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
        stop_on_cancel: ``cancel()`` on the future of a running call stops
            it (its worker is killed and replaced, the future ends
            cancelled), as ``nestpool.stop`` does, so that asyncio's
            cancellation reaches the worker. Off by default: ``cancel()``
            then keeps the standard library's meaning (a running call
            cannot be cancelled).
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
    timeout = check_timeout(timeout)
    retries = check_retries(retries)
    stop_on_cancel = check_flag(stop_on_cancel)
    check_name(name)

    def decorate(func: Callable[P, R]) -> ProcessTask[P, R]:
        check_decorated("process_task", func)
        options, _plain = make_options("process", func, name, timeout)
        options.retries = retries
        options.stop_on_cancel = stop_on_cancel
        task: ProcessTask[P, R] = ProcessTask(func, options, binding_of(func))
        options.factory = task._self_payload
        return task

    if not isinstance(fn, EllipsisType):
        # process_task(None) decorates None: a TypeError, not a decorator
        return decorate(fn)
    return decorate
