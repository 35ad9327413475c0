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
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from typing import Any, Generic, Literal, cast, overload

from ._serialize import ChunkValues
from ._subtasks import SubtaskFuture, is_helper
from ._typing import FutureLike, R, T

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


class MapIterator(Iterator[R], Generic[R]):
    """The iterator ``map`` returns: lazy, bounded, cancel-on-close.

    Work starts when ``map`` is called (the first units are submitted then);
    more input is pulled only as results are taken. ``close()``, leaving a
    ``with`` block, or dropping the iterator cancels what has not started.
    An item's exception is raised in its turn and ends the iteration, as
    ``concurrent.futures.Executor.map`` does: what has not started is
    cancelled and the next ``next()`` raises ``StopIteration``.

    Example:
        >>> totals = crunch.map(batches, ordered=False)
        >>> first = next(totals)
        >>> totals.close()               # what has not started is cancelled
    """

    # Not a generator: a generator made from a method holds ``self``, and that
    # cycle kept a dropped or abandoned map (``break``) running until the
    # cyclic GC ran (issue 3). Nothing here refers back to the iterator, so
    # dropping it cancels at once; and no value handed out is kept alive here.

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
        #: the size of the next unit, chosen once: asking the sizer again on
        #: every refill that finds no room would ramp the size up unused.
        self._size: int | None = None
        self._buffersize = buffersize
        self._max_units = max(1, max_units)
        self._max_items = max_items
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._ordered = ordered
        self._window: deque[_Unit] = deque()  # ordered: submitted, in input order
        self._running: dict[Future[Any], _Unit] = {}  # unordered: submitted
        self._done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()  # unordered
        #: what is left of the unit being handed out: bare values when every
        #: item succeeded (``_ready_plain``, the hot path), else outcomes
        self._ready: deque[Any] = deque()
        self._ready_plain = False
        self._in_flight = 0  # items taken from the input and not yet handed out
        self._input_error: BaseException | None = None
        self._exhausted = False
        self._finished = False
        self._fill()

    def __iter__(self) -> MapIterator[R]:
        return self

    def __next__(self) -> R:
        try:
            ready = self._ready
            while not ready:
                if self._finished:
                    raise StopIteration
                self._take_unit()
            if self._ready_plain:
                value = ready.popleft()
            else:
                ok, value = ready.popleft()
                if not ok:
                    try:
                        raise value
                    finally:
                        del value
            if self._buffersize is not None:
                # Bounded by items: taken but not yet handed out <= buffersize.
                self._in_flight -= 1
                self._fill()
            return value  # type: ignore[no-any-return]
        except BaseException:
            # An item's error, a timeout, Ctrl-C, the end: the map is over.
            self._finish()
            raise

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
        self._finish()

    def __del__(self) -> None:
        try:
            self._cancel()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # -------------------------------------------------------------- input

    def _fill(self) -> None:
        buffersize = self._buffersize
        while not self._exhausted:
            if buffersize is None and (
                (len(self._window) if self._ordered else len(self._running)) >= self._max_units
                or (self._max_items is not None and self._in_flight >= self._max_items)
            ):
                return
            size = self._size
            if size is None:
                size = self._size = self._sizer()
            if buffersize is not None:
                room = buffersize - self._in_flight
                if room < size:
                    if self._in_flight > 0:
                        # Wait for room for a whole unit: topping up with
                        # one-item units as each value is handed out would
                        # undo the batching (issue 3).
                        return
                    size = room
            batch: list[Item] = []
            try:
                if size == 1:
                    # One item per unit (a subtask's map): no islice per item.
                    batch.append(next(self._items))
                else:
                    # extend() keeps what it took if the input raises midway.
                    batch.extend(itertools.islice(self._items, size))
            except StopIteration:
                pass
            except BaseException as exc:
                # The input itself failed: hand out what was taken, then raise it.
                self._input_error = exc
                self._exhausted = True
            self._size = None
            if len(batch) < size:
                self._exhausted = True
                self._items = iter(())
            if not batch:
                return
            future, is_chunk = self._submit(batch)
            unit = _Unit(future, len(batch), is_chunk)
            self._in_flight += unit.count
            if self._ordered:
                self._window.append(unit)
            else:
                self._running[future] = unit
                future.add_done_callback(self._done.put)

    def _finish(self) -> None:
        self._finished = self._exhausted = True
        self._items = iter(())
        self._input_error = None
        self._ready.clear()
        self._cancel()

    def _cancel(self) -> None:
        window = self._window
        while window:
            window.popleft().future.cancel()
        running = self._running
        while running:
            running.popitem()[0].cancel()

    # -------------------------------------------------------------- output

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return self._deadline - time.monotonic()

    def _take_unit(self) -> None:
        """Move the next unit's outcomes (ordered: the oldest; unordered: the
        first completed) to ``_ready``, waiting for it; or end the map."""
        if self._ordered:
            window = self._window
            if not window:
                self._end()
                return
            outcomes = self._outcomes(window[0])  # a timeout leaves it to _finish
            unit = window.popleft()
        else:
            if not self._running:
                self._end()
                return
            unit = self._running.pop(self._next_completed())
            outcomes = self._outcomes(unit)
        if self._buffersize is None:
            # Bounded by units: refill once per unit, not per item (hot path).
            self._in_flight -= unit.count
            self._fill()
        # Every item succeeded: hand the values out as they are (no tuple per item).
        self._ready_plain = type(outcomes) is ChunkValues
        self._ready.extend(outcomes)

    def _end(self) -> None:
        self._finished = True
        error = self._input_error
        if error is not None:
            self._input_error = None
            raise error

    def _outcomes(self, unit: _Unit) -> list[Any]:
        """The unit's outcomes, or its bare values (a ``ChunkValues``) when every
        item succeeded."""
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
        return ChunkValues((value,))

    def _next_completed(self) -> Future[Any]:
        done = self._done
        while True:
            try:
                return done.get_nowait()
            except queue.Empty:
                pass
            # Nothing finished yet: run one unstarted subtask here rather than
            # block (a pool thread waiting here must never deadlock its pool).
            if is_helper() and self._run_one_unstarted():
                continue
            remaining = self._remaining()
            try:
                return done.get(timeout=None if remaining is None else max(0.0, remaining))
            except queue.Empty:
                raise FuturesTimeoutError() from None

    def _run_one_unstarted(self) -> bool:
        for future in self._running:
            if isinstance(future, SubtaskFuture) and future.pending_work():
                future.run_here(helping=True)
                return True
        return False


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
    futures: Iterable[FutureLike[T]], *, return_exceptions: Literal[False] = False
) -> list[T]: ...
@overload
def gather(
    futures: Iterable[FutureLike[T]], *, return_exceptions: bool
) -> list[T | BaseException]: ...
# mypy joins a list display of a Future[int] and a Future[str] to list[object]
# before it solves T; this last overload types gather([f_int, f_str]) as
# list[object] there rather than an error (pyright solves T = int | str above).
@overload
def gather(  # pyright: ignore[reportOverlappingOverload]
    futures: Iterable[Future[Any]], *, return_exceptions: bool = False
) -> list[object]: ...
def gather(futures: Iterable[FutureLike[Any]], *, return_exceptions: bool = False) -> list[Any]:
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
        with ``return_exceptions=True`` a ``list[T | BaseException]``. For
        futures of several types ``T`` is their union (pyright), or
        ``object`` (mypy, for a list display).

    Raises:
        Exception: without ``return_exceptions``, the first exception raised by
            a future (or ``CancelledError`` for a cancelled one).

    Example:
        >>> totals = gather([crunch(batch) for batch in batches])
        >>> pages = gather(fetch(u) for u in urls)   # inside a process task
    """
    fs = cast("list[Future[Any]]", list(futures))
    if not fs:
        return []
    failed = _wait_all(fs, stop_on_failure=not return_exceptions)
    if failed is not None:
        failed.result()  # raises its exception (CancelledError if cancelled)
    if return_exceptions:
        values: list[Any] = []
        for f in fs:
            if f.cancelled():
                values.append(CancelledError())
            else:
                exc = f.exception()
                values.append(f.result() if exc is None else exc)
        return values
    return [f.result() for f in fs]


class _Gathering:
    """The done-callback of one ``gather``: counts the futures that are done and
    notes the first that failed.

    Done-callbacks rather than ``concurrent.futures.wait``: ``wait`` only learns
    of a cancellation when an executor calls ``set_running_or_notify_cancel``,
    so it waited for a cancelled future until its executor reached it, and
    forever for one no executor runs (issue 3). A callback runs at ``cancel()``.
    """

    __slots__ = ("event", "failed", "left", "lock", "stop_on_failure")

    def __init__(self, count: int, stop_on_failure: bool) -> None:
        self.left = count
        self.stop_on_failure = stop_on_failure
        self.failed: Future[Any] | None = None
        self.lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self, future: Future[Any]) -> None:
        failure = self.stop_on_failure and (future.cancelled() or future.exception() is not None)
        with self.lock:
            self.left -= 1
            if failure and self.failed is None:
                self.failed = future
            if self.left == 0 or self.failed is not None:
                self.event.set()


def _wait_all(fs: list[Future[Any]], *, stop_on_failure: bool) -> Future[Any] | None:
    """Wait until every future is done, or (``stop_on_failure``) one fails;
    return the first that failed, or None."""
    unique = list(dict.fromkeys(fs))
    gathering = _Gathering(len(unique), stop_on_failure)
    for f in unique:
        f.add_done_callback(gathering)  # runs at once for one already done
    if is_helper():
        # A pool thread that waits runs the subtasks nobody has started yet,
        # in the given order, so that gathering inside the pool never deadlocks.
        for f in unique:
            if gathering.event.is_set():
                break
            if isinstance(f, SubtaskFuture) and f.pending_work():
                f.run_here(helping=True)
    gathering.event.wait()
    return gathering.failed


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
