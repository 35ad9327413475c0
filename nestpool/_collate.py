"""Collated values: the lazy, bounded, ordered-or-not ``map``, and ``gather``.

What it owns: pulling input only as slots free up, cutting it into units (one
item, or a chunk of items for process tasks), keeping at most ``buffersize``
items (or, by default, a few chunks per worker slot) in flight, and yielding
each item's own value or raising its own exception at its position (ordered)
or as it completes (unordered). Closing or dropping the iterator cancels what
has not started.

A waiting consumer never deadlocks a thread pool: it waits on subtask futures
through ``result()`` (ordered) or runs unstarted ones itself (unordered).

It must never touch processes or the dispatcher's tables: units are submitted
through a callback.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from typing import Any, Generic, Literal, overload

from ._subtasks import SubtaskFuture, is_helper
from ._typing import R, T

__all__ = ["ChunkSizer", "MapIterator", "gather", "run_chunk"]

Item = tuple[Any, ...]
Outcome = tuple[bool, Any]
#: submit(items) -> (future, is_chunk); a chunk's future holds a list of outcomes.
SubmitUnit = Callable[[list[Item]], tuple["Future[Any]", bool]]

#: auto chunksize aims at chunks of about this many seconds of work
TARGET_CHUNK_SECONDS = 0.02
MAX_AUTO_CHUNK = 8192
#: with no buffersize, this many chunks per worker slot are kept in flight
CHUNKS_PER_SLOT = 4


class ChunkSizer:
    """Chooses the next chunk's size: fixed, or adapted to measured item time.

    The automatic size starts at 1 and, once the workers have reported how long
    an item takes, aims at ``TARGET_CHUNK_SECONDS`` of work per chunk, so tiny
    tasks are not dominated by dispatch cost and long ones still spread out.
    """

    __slots__ = ("cap", "fixed", "measure")

    def __init__(
        self,
        chunksize: int | None,
        measure: Callable[[], float | None] | None,
        cap: int,
    ) -> None:
        self.fixed: int | None = chunksize
        self.measure: Callable[[], float | None] | None = measure
        self.cap: int = max(1, cap)

    def __call__(self) -> int:
        if self.fixed is not None:
            return min(self.fixed, self.cap)
        seconds = self.measure() if self.measure is not None else None
        if not seconds:
            return 1 if seconds is None else min(MAX_AUTO_CHUNK, self.cap)
        return max(1, min(int(TARGET_CHUNK_SECONDS / seconds), MAX_AUTO_CHUNK, self.cap))


class _Unit:
    __slots__ = ("count", "future", "is_chunk")

    def __init__(self, future: Future[Any], count: int, is_chunk: bool) -> None:
        self.future = future
        self.count = count
        self.is_chunk = is_chunk


class _Notify:
    """A done-callback that posts its unit to the completion queue."""

    __slots__ = ("done", "unit")

    def __init__(self, done: queue.SimpleQueue[_Unit], unit: _Unit) -> None:
        self.done = done
        self.unit = unit

    def __call__(self, _future: Future[Any]) -> None:
        self.done.put(self.unit)


class MapIterator(Iterator[R], Generic[R]):
    """The iterator ``map`` returns: lazy, bounded, cancel-on-close.

    Work starts when ``map`` is called (the first units are submitted then);
    more input is pulled only as results are taken. ``close()``, leaving a
    ``with`` block, or dropping the iterator cancels what has not started.
    """

    def __init__(
        self,
        iterables: tuple[Iterable[Any], ...],
        submit: SubmitUnit,
        sizer: ChunkSizer,
        *,
        ordered: bool = True,
        buffersize: int | None = None,
        max_units: int = 8,
        timeout: float | None = None,
    ) -> None:
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        self._items: Iterator[Item] = zip(*iterables, strict=False)
        self._submit = submit
        self._sizer = sizer
        self._buffersize = buffersize
        self._max_units = max(1, max_units)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._window: deque[_Unit] = deque()
        self._in_flight = 0  # items taken from the input and not yet yielded
        self._input_error: BaseException | None = None
        self._exhausted = False
        self._done: queue.SimpleQueue[_Unit] | None = None if ordered else queue.SimpleQueue()
        self._fill()
        self._gen: Generator[R, None, None] = self._ordered() if ordered else self._unordered()

    def __iter__(self) -> MapIterator[R]:
        return self

    def __next__(self) -> R:
        return next(self._gen)

    def __enter__(self) -> MapIterator[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop: cancel every unit that has not started; drop the input."""
        self._gen.close()
        self._cancel()

    def __del__(self) -> None:
        try:
            self._cancel()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # -------------------------------------------------------------- input

    def _fill(self) -> None:
        while not self._exhausted:
            size = self._sizer()
            if self._buffersize is not None:
                room = self._buffersize - self._in_flight
                if room <= 0:
                    return
                size = min(size, room)
            elif len(self._window) >= self._max_units:
                return
            try:
                batch = list(itertools.islice(self._items, size))
            except BaseException as exc:
                # The input itself failed: yield what was taken, then raise it.
                self._input_error = exc
                self._exhausted = True
                self._items = iter(())
                return
            if len(batch) < size:
                self._exhausted = True
                self._items = iter(())
            if not batch:
                return
            future, is_chunk = self._submit(batch)
            unit = _Unit(future, len(batch), is_chunk)
            self._in_flight += unit.count
            self._window.append(unit)
            if self._done is not None:
                future.add_done_callback(_Notify(self._done, unit))

    def _cancel(self) -> None:
        window = self._window
        while window:
            window.popleft().future.cancel()

    # -------------------------------------------------------------- output

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return self._deadline - time.monotonic()

    def _outcomes(self, unit: _Unit) -> list[Outcome]:
        future = unit.future
        try:
            exc = future.exception(self._remaining())
        except CancelledError as cancelled:
            return [(False, cancelled)] * unit.count
        if exc is not None:
            return [(False, exc)] * unit.count
        value = future.result()
        if unit.is_chunk:
            return value  # type: ignore[no-any-return]
        return [(True, value)]

    def _yield_outcomes(self, outcomes: list[Outcome]) -> Iterator[R]:
        exact = self._buffersize is not None
        if not exact:
            # Bounded by units: refill once per unit, not per item (hot path).
            self._in_flight -= len(outcomes)
            self._fill()
        for ok, value in outcomes:
            if not ok:
                raise value
            if exact:
                # Bounded by items: taken but not yet yielded <= buffersize.
                self._in_flight -= 1
                self._fill()
            yield value

    def _ordered(self) -> Generator[R, None, None]:
        try:
            while self._window:
                unit = self._window[0]
                outcomes = self._outcomes(unit)
                self._window.popleft()
                yield from self._yield_outcomes(outcomes)
            if self._input_error is not None:
                raise self._input_error
        finally:
            self._cancel()

    def _unordered(self) -> Generator[R, None, None]:
        done = self._done
        assert done is not None
        try:
            while self._window:
                unit = self._next_completed(done)
                self._window.remove(unit)
                yield from self._yield_outcomes(self._outcomes(unit))
            if self._input_error is not None:
                raise self._input_error
        finally:
            self._cancel()

    def _next_completed(self, done: queue.SimpleQueue[_Unit]) -> _Unit:
        while True:
            try:
                return done.get_nowait()
            except queue.Empty:
                pass
            # Nothing finished yet: run one unstarted subtask here rather than
            # block (a pool thread waiting here must never deadlock its pool).
            for unit in self._window if is_helper() else ():
                future = unit.future
                if isinstance(future, SubtaskFuture) and future.pending_work():
                    future.run_here(helping=True)
                    break
            else:
                remaining = self._remaining()
                try:
                    return done.get(timeout=remaining)
                except queue.Empty:
                    raise FuturesTimeoutError() from None


def run_chunk(fn: Callable[..., Any], items: list[Item]) -> list[Outcome]:
    """Run a chunk of items in this thread; each item keeps its own outcome."""
    outcomes: list[Outcome] = []
    for args in items:
        try:
            outcomes.append((True, fn(*args)))
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes


@overload
def gather(
    futures: Iterable[Future[T]], *, return_exceptions: Literal[False] = False
) -> list[T]: ...
@overload
def gather(futures: Iterable[Future[T]], *, return_exceptions: bool) -> list[T | BaseException]: ...
def gather(
    futures: Iterable[Future[T]], *, return_exceptions: bool = False
) -> list[T] | list[T | BaseException]:
    """Wait for futures and return their values, in the order given.

    Works on any ``concurrent.futures.Future`` (nestpool's, inline ones, the
    standard library's). A thread that gathers subtasks which have not started
    yet runs them itself, so gathering inside a thread pool never deadlocks.

    Args:
        futures: the futures to wait for.
        return_exceptions: False (default): raise the first failure as soon as
            it happens, without waiting for the others. True: wait for all and
            put each failure's exception (``CancelledError`` for a cancelled
            future) in the list at its position.

    Returns:
        The values, one per future, in the order given: a ``list[T]``, or
        with ``return_exceptions=True`` a ``list[T | BaseException]``.

    Raises:
        Exception: without ``return_exceptions``, the first exception raised by
            a future (or ``CancelledError`` for a cancelled one).

    Example:
        >>> totals = gather([crunch(batch) for batch in batches])
        >>> pages = gather(fetch(u) for u in urls)   # inside a process task
    """
    from concurrent.futures import ALL_COMPLETED, FIRST_EXCEPTION, wait

    fs = list(futures)
    if not fs:
        return []
    if return_exceptions:
        wait(fs, return_when=ALL_COMPLETED)
        values: list[Any] = []
        for f in fs:
            if f.cancelled():
                values.append(CancelledError())
            else:
                exc = f.exception()
                values.append(f.result() if exc is None else exc)
        return values
    wait(fs, return_when=FIRST_EXCEPTION)
    # Either all are done, or one failed: result() raises the first failure in
    # the order given among those done (a cancelled one raises CancelledError).
    for f in fs:
        if f.done() and (f.cancelled() or f.exception() is not None):
            f.result()
    return [f.result() for f in fs]
