"""The typed signatures of ``.map`` and ``.amap`` on decorated functions.

What it owns: one overload per number of iterables (1 to 5), each matching the
decorated function's own parameters, so that ``crunch.map(["a"], [2])`` checks
each iterable's items against the parameter they feed (a wrong item is a
type error at the call site, not an exception later in a worker). A
``ParamSpec`` cannot be split into "one iterable per parameter", so the
overloads take the function through a self-type: a callback protocol
(``Takes1`` ... ``Takes5``) that the decorated function's ``__call__`` must
satisfy. A structural match (not ``ProcessTask[[A1], R]``) is what both
checkers accept: mypy solves a self-type of a concrete ``ParamSpec`` shape to
``Never``, and pyright, whose ``ParamSpec`` is invariant, rejects a function
with defaults or keyword-only parameters against it. From six iterables on, the
items are not checked (``Iterable[Any]``), as in typeshed's ``builtins.map``;
with none, the map is empty, as ``Executor.map(fn)``.

At run time the methods only hand over to ``_self_collate`` of the class (bound
methods too, through ``BoundCollating``); they never decide where anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from ._async import AsyncMapIterator
from ._map_iterator import MapIterator
from ._progress import Progress, make_reporter

if TYPE_CHECKING:
    from ._routing import TaskOptions

__all__ = [
    "BoundCollating",
    "DecoratedFunction",
    "Takes1",
    "Takes2",
    "Takes3",
    "Takes4",
    "Takes5",
    "TakesAny",
    "collate_amap",
]

R = TypeVar("R")
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")
A4 = TypeVar("A4")
A5 = TypeVar("A5")
# Protocol parameters: the arguments are contravariant; the result sits in an
# invariant Future, so it is invariant too.
_A1 = TypeVar("_A1", contravariant=True)
_A2 = TypeVar("_A2", contravariant=True)
_A3 = TypeVar("_A3", contravariant=True)
_A4 = TypeVar("_A4", contravariant=True)
_A5 = TypeVar("_A5", contravariant=True)
_R = TypeVar("_R")


class Takes1(Protocol[_A1, _R]):
    """A decorated function that can be called with one positional argument."""

    def __call__(self, a1: _A1, /) -> Future[_R]: ...


class Takes2(Protocol[_A1, _A2, _R]):
    """A decorated function that can be called with two positional arguments."""

    def __call__(self, a1: _A1, a2: _A2, /) -> Future[_R]: ...


class Takes3(Protocol[_A1, _A2, _A3, _R]):
    """A decorated function that can be called with three positional arguments."""

    def __call__(self, a1: _A1, a2: _A2, a3: _A3, /) -> Future[_R]: ...


class Takes4(Protocol[_A1, _A2, _A3, _A4, _R]):
    """A decorated function that can be called with four positional arguments."""

    def __call__(self, a1: _A1, a2: _A2, a3: _A3, a4: _A4, /) -> Future[_R]: ...


class Takes5(Protocol[_A1, _A2, _A3, _A4, _A5, _R]):
    """A decorated function that can be called with five positional arguments."""

    def __call__(self, a1: _A1, a2: _A2, a3: _A3, a4: _A4, a5: _A5, /) -> Future[_R]: ...


class TakesAny(Protocol[_R]):
    """A decorated function, whatever its parameters."""

    def __call__(self, *args: Any, **kwargs: Any) -> Future[_R]: ...


class DecoratedFunction:
    """``map`` and ``amap`` of the decorated-function classes, typed per
    iterable; each class supplies ``_self_collate``.

    (Named for mypy's messages, which name the class that defines a method:
    'No overload variant of "map" of "DecoratedFunction" matches ...'.)
    """

    _self_options: TaskOptions

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
        """The map of this task's calls over ``iterables``.

        Args:
            bound: this task, or its bound method (whose instance goes first).
            from_amap: the map is consumed by ``amap`` from an event loop.
        """
        raise NotImplementedError  # pragma: no cover - each class has its own

    @overload
    def map(
        self: TakesAny[R],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self: Takes1[A1, R],
        iterable: Iterable[A1],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self: Takes2[A1, A2, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self: Takes3[A1, A2, A3, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        iterable3: Iterable[A3],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self: Takes4[A1, A2, A3, A4, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        iterable3: Iterable[A3],
        iterable4: Iterable[A4],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self: Takes5[A1, A2, A3, A4, A5, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        iterable3: Iterable[A3],
        iterable4: Iterable[A4],
        iterable5: Iterable[A5],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self: TakesAny[R],
        iterable: Iterable[Any],
        iterable2: Iterable[Any],
        iterable3: Iterable[Any],
        iterable4: Iterable[Any],
        iterable5: Iterable[Any],
        iterable6: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    def map(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[Any]:
        """Call the function over the zipped iterables; iterate its values.

        A process task's calls go to the worker processes (with a pool open),
        a subtask's to the thread pool of the calling process; with no pool
        they run here, one per ``next()``. Lazy and bounded: input is pulled
        only as values are taken, with at most ``buffersize`` items in flight
        (by default a few units per worker slot or thread). Closing or
        dropping the iterator cancels what has not started.

        Each iterable feeds one positional parameter, and the type checker
        checks its items against that parameter (for up to five iterables).

        Args:
            *iterables: zipped into the positional arguments of each call.
            ordered: True: values in input order; False: in completion order.
            chunksize: items sent at once (to a worker, or per thread hop);
                None: for a process task, chosen and adapted so that tiny
                tasks are not dominated by dispatch cost; for a subtask, 1.
            buffersize: the most items in flight at once.
            progress: True shows a tqdm progress bar (the ``nestpool[progress]``
                extra); a callable is called as ``progress(done)`` after each
                value is handed out, in the consuming thread.

        Returns:
            The function's values, as a ``MapIterator[R]`` (``close()`` or a
                ``with`` block stops it); an item's exception is raised at its
                place and ends the iteration.

        Raises:
            ImportError: ``progress=True`` and tqdm is not installed.
            ValueError: ``chunksize`` or ``buffersize`` < 1.
            TypeError: ``buffersize`` is not an int, or ``progress`` is not
                one of the accepted values.

        Example:
            >>> total = sum(crunch.map(batches))                 # MapIterator[int]
            >>> total = sum(crunch.map(batches, progress=True))  # with a tqdm bar
            >>> pages = list(fetch.map(urls, ordered=False))     # as they complete
        """
        return self._self_collate(self, iterables, ordered, chunksize, buffersize, progress, False)

    @overload
    def amap(
        self: TakesAny[R],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[R]: ...
    @overload
    def amap(
        self: Takes1[A1, R],
        iterable: Iterable[A1],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[R]: ...
    @overload
    def amap(
        self: Takes2[A1, A2, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[R]: ...
    @overload
    def amap(
        self: Takes3[A1, A2, A3, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        iterable3: Iterable[A3],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[R]: ...
    @overload
    def amap(
        self: Takes4[A1, A2, A3, A4, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        iterable3: Iterable[A3],
        iterable4: Iterable[A4],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[R]: ...
    @overload
    def amap(
        self: Takes5[A1, A2, A3, A4, A5, R],
        iterable: Iterable[A1],
        iterable2: Iterable[A2],
        iterable3: Iterable[A3],
        iterable4: Iterable[A4],
        iterable5: Iterable[A5],
        /,
        *,
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[R]: ...
    @overload
    def amap(
        self: TakesAny[R],
        iterable: Iterable[Any],
        iterable2: Iterable[Any],
        iterable3: Iterable[Any],
        iterable4: Iterable[Any],
        iterable5: Iterable[Any],
        iterable6: Iterable[Any],
        /,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[R]: ...
    def amap(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> AsyncMapIterator[Any]:
        """``map`` for asyncio: ``async for value in task.amap(...)``.

        The same lazy, bounded map as ``.map`` (work starts at the call), whose
        waits happen in the event loop's default executor, so the loop keeps
        running while the values come. Options and item checking as for
        ``.map``; ``aclose()`` cancels what has not started.

        Args:
            *iterables: zipped into the positional arguments of each call.
            ordered: True: values in input order; False: in completion order.
            chunksize: items sent at once, as for ``.map``.
            buffersize: the most items in flight at once.
            progress: True for a tqdm bar, or a callable ``progress(done)``
                called in the event loop's thread after each value.

        Returns:
            The function's values, as an ``AsyncMapIterator[R]`` (``await
                aclose()`` or an ``async with`` block stops it); an item's
                exception is raised at its place.

        Example:
            >>> async def main() -> None:
            ...     with Pool():
            ...         async for total in crunch.amap(batches):
            ...             print(total)
        """
        return collate_amap(self, self, iterables, ordered, chunksize, buffersize, progress)


def collate_amap(
    task: DecoratedFunction,
    bound: Any,
    iterables: tuple[Iterable[Any], ...],
    ordered: bool,
    chunksize: int | None,
    buffersize: int | None,
    progress: Progress,
) -> AsyncMapIterator[Any]:
    """``amap``: the task's map, consumed with ``async for``; its progress is
    reported as values reach the loop."""
    reporter = make_reporter(progress, iterables, task._self_options.name)
    iterator = task._self_collate(bound, iterables, ordered, chunksize, buffersize, None, True)
    return AsyncMapIterator(iterator, reporter)


class BoundCollating:
    """``map``, ``amap`` and ``sync`` of a decorated method bound to its
    instance: the same as its unbound task's, over this binding."""

    _self_parent: Any
    __wrapped__: Any

    def map(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: Progress = None,
    ) -> MapIterator[Any]:
        """The task's ``map`` for a bound method."""
        task: DecoratedFunction = self._self_parent
        return task._self_collate(self, iterables, ordered, chunksize, buffersize, progress, False)

    def amap(
        self,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: Progress = None,
    ) -> AsyncMapIterator[Any]:
        """The task's ``amap`` for a bound method."""
        return collate_amap(
            self._self_parent, self, iterables, ordered, chunksize, buffersize, progress
        )

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain method here and now; return its value."""
        return self.__wrapped__(*args, **kwargs)
