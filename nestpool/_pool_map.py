"""``Pool.map``: ``concurrent.futures.Executor.map``, with the checks and
messages of ``ProcessPoolExecutor.map`` and its typed overloads.

What it owns: ``ExecutorMap``, the base class of ``Pool`` that holds its
``map``: checking the arguments, saying what runs (``_calls.map_work``),
collecting the input at the call as the standard library does (unless a
``buffersize`` asks for Python 3.14's lazy map), handing the map to the pool's
backend, and the ``progress=`` report around it.

It never decides whether the pool still takes work, nor how the refusal is
worded: ``Pool`` answers both (``_closed``, ``_refusal``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, overload

from . import _exit
from ._backend import Backend
from ._calls import map_work
from ._map_iterator import MapIterator
from ._map_units import SLICEABLE
from ._progress import make_reporter, with_progress
from ._typing import R

if TYPE_CHECKING:
    from ._process_task import ProcessTask
    from ._thread_subtask import ThreadSubtask

__all__ = ["ExecutorMap"]


class ExecutorMap(Executor):
    """The ``map`` of ``Pool`` (its base class; never used alone)."""

    #: what runs the process tasks (``Pool`` chooses it)
    _backend: Backend
    #: shut down by its user or at exit: no more work
    _closed: bool

    def _refusal(self) -> RuntimeError:
        """The error for work given once closed (``Pool`` words it)."""
        raise NotImplementedError

    @overload
    def map(
        self,
        fn: ProcessTask[..., R] | ThreadSubtask[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: functools.partial[Future[R]],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[R]: ...
    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] | None = None,
    ) -> MapIterator[Any]:
        """As ``concurrent.futures.Executor.map``.

        Returns an iterator of ``fn``'s values in input order. Without a
        ``buffersize``, the iterables are collected and every call submitted
        at the call, as the standard library does: a map never iterated still
        runs in full, and dropping it before its first value cancels nothing.
        With one, it is lazy: at most ``buffersize`` items in flight, more
        input taken only as values are (Python 3.14's ``buffersize``); for a
        lazy map with chunks sized for you, use the task's own ``.map``.

        Args:
            fn: a picklable callable (by value for lambdas and ``__main__``);
                a decorated task, or a ``functools.partial`` of one, runs its
                plain function.
            *iterables: zipped into the arguments of each call.
            timeout: seconds from the call; iterating past it raises
                ``TimeoutError`` (``concurrent.futures.TimeoutError``).
            chunksize: items sent to a worker at once.
            buffersize: the most items in flight at once (as Python 3.14);
                None: every item at once, taken from the input at the call.
            progress: True shows a tqdm progress bar (the ``nestpool[progress]``
                extra); a callable is called as ``progress(done)`` after each
                value is handed out, in the consuming thread.

        Raises:
            ValueError: ``chunksize`` < 1 or ``buffersize`` < 1.
            Exception: whatever the input raises while it is collected.
            TypeError: ``buffersize`` is not an int or None.
            PoolClosedError: the pool was shut down, or the interpreter is
                exiting (as ``submit``).
            ImportError: ``progress=True`` and tqdm is not installed.

        Example:
            >>> list(pool.map(pow, [2, 3], [5, 2]))
            [32, 9]
            >>> sizes = list(pool.map(len, pages, progress=True))   # a tqdm bar
        """
        # The checks and messages of ProcessPoolExecutor.map (Python 3.14).
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        # Checked at run time too, for callers that are not type-checked.
        if buffersize is not None and not isinstance(buffersize, int):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if self._closed or _exit.global_shutdown:
            raise self._refusal()
        work, iterables = map_work(fn, iterables)
        submit_all = buffersize is None
        if submit_all:
            iterables = _collected(iterables)
        reporter = make_reporter(progress, iterables, work.name)
        iterator = self._backend.map(
            work,
            iterables,
            ordered=True,
            chunksize=chunksize,
            buffersize=buffersize,
            timeout=timeout,
            submit_all=submit_all,
        )
        return with_progress(iterator, reporter)


def _collected(iterables: tuple[Iterable[Any], ...]) -> tuple[Iterable[Any], ...]:
    """The iterables taken in full now, as ``Executor.map`` takes them (up to
    the shortest, as ``zip``; an error the input raises comes from the call).
    Lists, ranges and tuples stay as they are: a map slices its chunks from
    them (``SLICEABLE``)."""
    if all(type(iterable) in SLICEABLE for iterable in iterables):
        return iterables
    if len(iterables) == 1:
        return (list(iterables[0]),)
    rows = list(zip(*iterables, strict=False))
    if not rows:
        return tuple([] for _ in iterables)
    return tuple(list(column) for column in zip(*rows, strict=True))
