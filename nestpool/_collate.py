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

import asyncio
import itertools
import queue
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from typing import Any, Generic, Literal, overload

from ._serialize import ChunkValues, as_outcomes
from ._subtasks import SubtaskFuture, is_helper
from ._typing import R, T

__all__ = [
    "AsyncMapIterator",
    "ChunkSizer",
    "MapIterator",
    "Progress",
    "gather",
    "run_chunk",
    "with_progress",
]

Item = tuple[Any, ...]
Outcome = tuple[bool, Any]
#: submit(items) -> (future, is_chunk); a chunk's future holds a list of outcomes.
SubmitUnit = Callable[[list[Item]], tuple["Future[Any]", bool]]

#: auto chunksize aims at chunks of about this many seconds of work
TARGET_CHUNK_SECONDS = 0.02
MAX_AUTO_CHUNK = 8192
#: with no buffersize, this many chunks per worker slot are kept in flight
CHUNKS_PER_SLOT = 4
#: ... but no more items than this many full-size automatic chunks per slot:
#: chunks that large are tiny items, for which one running and one waiting
#: per slot keep the workers busy, and more only costs the parent memory
#: (issue 6: a map over millions of items keeps the parent within a few MB).
FULL_CHUNKS_PER_SLOT = 2


class ChunkSizer:
    """Chooses the next chunk's size: fixed, or adapted to measured item time.

    The automatic size starts at 1 and, once the workers have reported how long
    an item takes, aims at ``TARGET_CHUNK_SECONDS`` of work per chunk, so tiny
    tasks are not dominated by dispatch cost and long ones still spread out.
    It at most doubles from one chunk to the next: a measurement taken from an
    earlier, quicker call of the task (a warm-up call with no work) must not put
    a whole map into one chunk on one worker.
    """

    __slots__ = ("cap", "fixed", "last", "measure")

    def __init__(
        self,
        chunksize: int | None,
        measure: Callable[[], float | None] | None,
        cap: int,
    ) -> None:
        self.fixed: int | None = chunksize
        self.measure: Callable[[], float | None] | None = measure
        self.cap: int = max(1, cap)
        self.last: int = 0

    def __call__(self) -> int:
        if self.fixed is not None:
            return min(self.fixed, self.cap)
        seconds = self.measure() if self.measure is not None else None
        if seconds is None:
            size = 1
        elif not seconds:
            size = min(MAX_AUTO_CHUNK, self.cap)
        else:
            size = max(1, min(int(TARGET_CHUNK_SECONDS / seconds), MAX_AUTO_CHUNK, self.cap))
        size = min(size, max(1, 2 * self.last))
        self.last = size
        return size


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

    Example:
        >>> totals = crunch.map(batches, ordered=False)
        >>> first = next(totals)
        >>> totals.close()               # what has not started is cancelled
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
        unary: bool = False,
        max_items: int | None = None,
    ) -> None:
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        # unary (one iterable, asked for by the submitter): the items are the
        # input's values themselves, not 1-tuples (no tuple per item to build,
        # pickle and unpickle: the tiny-task hot path, issue 6).
        self._items: Iterator[Any] = iter(iterables[0]) if unary else zip(*iterables, strict=False)
        self._submit = submit
        self._sizer = sizer
        self._buffersize = buffersize
        self._max_units = max(1, max_units)
        self._max_items = max_items
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
        """Stop: cancel every unit that has not started; drop the input.

        Example:
            >>> totals = pool.map(crunch, batches)
            >>> first = next(totals)
            >>> totals.close()           # no more batches are sent to workers
        """
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
            elif len(self._window) >= self._max_units or (
                self._max_items is not None and self._in_flight >= self._max_items
            ):
                return
            try:
                if size == 1:
                    # One item per unit (a subtask's map): no islice per item.
                    batch = [next(self._items)]
                else:
                    batch = list(itertools.islice(self._items, size))
            except StopIteration:
                batch = []
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
                if not unit.is_chunk and self._buffersize is None:
                    # One call per unit (a subtask's map): its value, or its
                    # own exception raised here, straight from the future.
                    value = unit.future.result(self._remaining())
                    self._window.popleft()
                    self._in_flight -= 1
                    self._fill()
                    yield value
                    continue
                outcomes = self._outcomes(unit)
                self._window.popleft()
                if type(outcomes) is ChunkValues and self._buffersize is None:
                    # Every item of the chunk succeeded: refill once, then hand
                    # the values out straight from the list (the per-item hot path).
                    self._in_flight -= len(outcomes)
                    self._fill()
                    yield from outcomes
                    continue
                yield from self._yield_outcomes(as_outcomes(outcomes))
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
                yield from self._yield_outcomes(as_outcomes(self._outcomes(unit)))
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


# ---------------------------------------------------------------- progress

#: What ``progress=`` accepts: None or False (no report), True (a tqdm bar, the
#: ``nestpool[progress]`` extra), or a callable called as ``progress(done)``
#: with the number of values handed out so far, in the consuming thread.
Progress = bool | Callable[[int], object] | None

_TQDM_MISSING = (
    "progress=True shows a tqdm progress bar, but tqdm is not installed. "
    "Install it with: pip install 'nestpool[progress]' (or pip install tqdm), "
    "or pass a callable, progress=lambda done: ..., to report progress yourself."
)


def _total(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The number of calls a map makes, when every input has a length."""
    lengths: list[int] = []
    for iterable in iterables:
        try:
            lengths.append(len(iterable))  # type: ignore[arg-type]
        except TypeError:
            return None
    return min(lengths) if lengths else None


class _Reporter:
    """Counts the values handed to the consumer and reports each one."""

    __slots__ = ("bar", "callback", "done")

    def __init__(self, progress: Progress, total: int | None, desc: str) -> None:
        self.done = 0
        self.bar: Any = None
        self.callback: Callable[[int], object] | None = None
        if progress is True:
            try:
                from tqdm import tqdm
            except ImportError:
                raise ImportError(_TQDM_MISSING) from None
            self.bar = tqdm(total=total, desc=desc, unit="item")
        elif callable(progress):
            self.callback = progress
        else:
            raise TypeError(
                "progress must be True, False, None or a callable progress(done: int), "
                f"got {type(progress).__name__}"
            )

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.callback is not None:
            self.callback(self.done)

    def close(self) -> None:
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()
        self.callback = None


def make_reporter(
    progress: Progress, iterables: tuple[Iterable[Any], ...], desc: str
) -> _Reporter | None:
    """A reporter for ``progress=``, or None when no progress is wanted.

    Raises ``ImportError`` (saying how to install tqdm) for ``progress=True``
    without tqdm, at the call, before any work starts.
    """
    if progress is None or progress is False:
        return None
    return _Reporter(progress, _total(iterables), desc)


class _ProgressIterator(Iterator[R], Generic[R]):
    """A map's iterator that reports each value it hands out."""

    __slots__ = ("_iterator", "_reporter")

    def __init__(self, iterator: Iterator[R], reporter: _Reporter) -> None:
        self._iterator = iterator
        self._reporter = reporter

    def __iter__(self) -> _ProgressIterator[R]:
        return self

    def __next__(self) -> R:
        try:
            value = next(self._iterator)
        except BaseException:
            self._reporter.close()
            raise
        self._reporter.advance()
        return value

    def __enter__(self) -> _ProgressIterator[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop: cancel what has not started, close the progress bar."""
        self._reporter.close()
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


def with_progress(iterator: Iterator[R], reporter: _Reporter | None) -> Iterator[R]:
    """Wrap a map's iterator so that it reports progress (or return it as is)."""
    if reporter is None:
        return iterator
    return _ProgressIterator(iterator, reporter)


# ---------------------------------------------------------------- asyncio

_END = object()


def _step(iterator: Iterator[Any]) -> Any:
    """In an executor thread: the iterator's next value, or ``_END``."""
    return next(iterator, _END)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # An abandoned step's exception is consumed here, not logged at exit.
    if not future.cancelled():
        future.exception()


class AsyncMapIterator(AsyncIterator[R], Generic[R]):
    """The async iterator ``amap`` returns: ``async for value in task.amap(xs)``.

    The work is the same lazy, bounded map as ``.map`` (it starts at the
    call); each wait for the next value happens in a thread of the event
    loop's default executor, so the loop keeps running while results come.
    Cancelling the consuming task loses no value: the next ``__anext__`` takes
    the value the cancelled one was waiting for. ``aclose()`` (or leaving
    ``async with``) cancels what has not started.

    Example:
        >>> async def main() -> int:
        ...     with Pool():
        ...         return sum([n async for n in crunch.amap(batches)])
    """

    def __init__(self, iterator: Iterator[R], reporter: _Reporter | None = None) -> None:
        self._iterator = iterator
        self._reporter = reporter
        self._step: asyncio.Future[Any] | None = None
        self._finished = False

    def __aiter__(self) -> AsyncMapIterator[R]:
        return self

    async def __anext__(self) -> R:
        if self._finished:
            raise StopAsyncIteration
        step = self._step
        if step is None:
            loop = asyncio.get_running_loop()
            step = self._step = loop.run_in_executor(None, _step, self._iterator)
        try:
            # shield: cancelling the consumer must not lose the value in flight.
            value = await asyncio.shield(step)
        except BaseException:
            if step.done():
                self._step = None
                self._close_sync()
            raise
        self._step = None
        if value is _END:
            self._finished = True
            self._close_sync()
            raise StopAsyncIteration
        if self._reporter is not None:
            self._reporter.advance()
        return value  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncMapIterator[R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel what has not started (after the value being waited for
        arrives, if a wait is in progress in the executor thread)."""
        self._finished = True
        step = self._step
        if step is not None and not step.done():
            step.add_done_callback(_retrieve)
            step.add_done_callback(lambda _done: self._close_sync())
            return
        self._close_sync()

    def _close_sync(self) -> None:
        if self._reporter is not None:
            self._reporter.close()
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
