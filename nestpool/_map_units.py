"""A map's units (an item, or a chunk of items) from input to values: which
are in flight, and settling them (how big each is: ``_chunk_sizing``).

What it owns: ``MapState``, everything a map knows but the iterator protocol: pulling
input only as room frees up, keeping at most ``buffersize`` items (or a few
chunks per worker slot) in flight, waiting for the next unit in input order
or as units complete (running an unstarted subtask rather than block a
helper thread), cancelling what has not started; and ``iter_units``, the
generator of each unit's values that ``_collate.ChunkedMap`` chains.

It must never touch processes or the dispatcher's tables (units are submitted
through a callback), nor hold a reference to the iterator it serves (dropping
the iterator must drop this state at once and cancel).
"""

from __future__ import annotations

import functools
import itertools
import queue
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from concurrent.futures._base import FINISHED
from typing import Any

from ._chunk_sizing import ChunkSizer
from ._compute_slots import IN_NESTPOOL
from ._futures import SubtaskFuture, cancel_notified, is_helper
from ._serialize import ChunkValues
from ._waiting import wait_for

__all__ = ["SLICEABLE", "Item", "MapState", "SubmitUnit", "iter_units"]

Item = tuple[Any, ...]
#: submit(items) -> (future, is_chunk); a chunk's future holds a list of outcomes.
SubmitUnit = Callable[[Sequence[Item]], tuple["Future[Any]", bool]]
#: inputs a unary map takes its chunks from as slices, not item by item
SLICEABLE = frozenset({range, list, tuple})


class _Unit:
    __slots__ = ("count", "future", "is_chunk")

    def __init__(self, future: Future[Any], count: int, is_chunk: bool) -> None:
        self.future = future
        self.count = count
        self.is_chunk = is_chunk


class MapState:
    """Everything a map knows but the iterator protocol: the input, the units
    in flight, the refill and the cancellation.

    Kept apart from ``ChunkedMap`` so that the generator of units
    (``iter_units``) refers to this and never to the iterator: dropping the
    iterator then drops the generator and this state at once (no reference
    cycle waiting for the cyclic GC), and ``__del__`` cancels what has not
    started as soon as the caller lets go of the map.
    """

    __slots__ = (
        "__weakref__",
        "buffersize",
        "cancel_on_drop",
        "current",
        "deadline",
        "done",
        "exhausted",
        "first_done",
        "held_out",
        "in_flight",
        "input_error",
        "items",
        "known_left",
        "left",
        "max_items",
        "max_units",
        "merge_ready",
        "ordered",
        "position",
        "running",
        "sequence",
        "size",
        "sizer",
        "submit",
        "window",
    )

    def __init__(
        self,
        iterables: tuple[Iterable[Any], ...],
        submit: SubmitUnit,
        sizer: ChunkSizer,
        *,
        ordered: bool,
        buffersize: int | None,
        max_units: int,
        timeout: float | None,
        unary: bool,
        max_items: int | None,
        merge_ready: bool = False,
        cancel_on_drop: bool = True,
    ) -> None:
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        # unary (one iterable, asked for by the submitter): the items are the
        # input's values themselves, not 1-tuples (no tuple per item to build,
        # pickle and unpickle on the tiny-task hot path).
        self.items: Iterator[Any] = iter(iterables[0]) if unary else zip(*iterables, strict=False)
        #: a unary map over a range, list or tuple takes its chunks as slices
        #: (a range's slice is a range: no int made or pickled per item in the
        #: parent; a list's is one copy in C), at ``position``; else None
        self.sequence: Sequence[Item] | None = None
        self.position = 0
        if unary and type(iterables[0]) in SLICEABLE:
            self.sequence = iterables[0]  # type: ignore[assignment]
        #: items left in an input of known length (every iterable a range,
        #: list or tuple: what ``zip`` stops at), for the chunk sizer; else None
        self.known_left: int | None = None
        if iterables and all(type(iterable) in SLICEABLE for iterable in iterables):
            self.known_left = min(len(iterable) for iterable in iterables)  # type: ignore[arg-type]
        self.submit = submit
        self.sizer = sizer
        #: the size of the next unit, chosen once: asking the sizer again on
        #: every refill that finds no room would ramp the size up unused.
        self.size: int | None = None
        self.buffersize = buffersize
        self.max_units = max(1, max_units)
        self.max_items = max_items
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.ordered = ordered
        self.window: deque[_Unit] = deque()  # ordered: submitted, in input order
        self.running: dict[Future[Any], _Unit] = {}  # unordered: submitted
        self.done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()  # unordered
        #: unordered: a completed unit taken from ``done`` and not yet handed out
        self.first_done: Future[Any] | None = None
        #: hand out with a one-item unit the next ones already done (an async
        #: map, ``take_ready``); those taken so, counted against ``max_units``
        self.merge_ready = merge_ready
        self.held_out = 0
        #: items taken from the input and not yet handed out (those of the
        #: unit being handed out included)
        self.in_flight = 0
        self.input_error: BaseException | None = None
        self.exhausted = False
        #: the unit being handed out: its values (reversed, popped one by one
        #: so that none is kept alive here once handed out, as the standard
        #: library's map, CPython issue 14406) and the pops left to make
        self.current: list[Any] = []
        self.left: Iterator[list[Any]] = iter(())
        #: False: dropping the map before its first value leaves its units to
        #: run (``Executor.map``: a map made for its side effects, never
        #: iterated, still runs; once iterated, the end of ``iter_units``
        #: cancels what has not started)
        self.cancel_on_drop = cancel_on_drop
        self.fill()

    def __del__(self) -> None:
        try:
            if self.cancel_on_drop:
                self.cancel()
        except Exception:  # pragma: no cover - interpreter shutdown, or a
            pass  # Ctrl-C that stopped __init__ before it set everything

    # -------------------------------------------------------------- input

    def fill(self) -> None:
        """Submit units while there is room and input."""
        buffersize = self.buffersize
        while not self.exhausted:
            if buffersize is None and (
                (len(self.window) if self.ordered else len(self.running)) + self.held_out
                >= self.max_units
                or (self.max_items is not None and self.in_flight >= self.max_items)
            ):
                return
            size = self.size
            if size is None:
                size = self.size = self.sizer(self.known_left)
            if buffersize is not None:
                room = buffersize - self.in_flight
                if room < size:
                    if self.in_flight > 0:
                        # Wait for room for a whole unit: topping up with
                        # one-item units as each value is handed out would
                        # undo the batching (every later unit one item).
                        return
                    size = room
            batch: Sequence[Item]
            sequence = self.sequence
            if sequence is not None:
                start = self.position
                batch = sequence[start : start + size]
                self.position = start + len(batch)
            else:
                batch = self._take(size)
            self.size = None
            if self.known_left is not None:
                self.known_left -= len(batch)
            if len(batch) < size:
                self.exhausted = True
                self.items = iter(())
                self.sequence = None
            if not batch:
                return
            future: Future[Any]
            try:
                future, is_chunk = self.submit(batch)
            except Exception as exc:
                # The pool shut down (say): the values already in flight are
                # still handed out, then this error, in its turn.
                future = Future()
                is_chunk = False
                future.set_running_or_notify_cancel()
                future.set_exception(exc)
                del exc
            unit = _Unit(future, len(batch), is_chunk)
            self.in_flight += unit.count
            if self.ordered:
                self.window.append(unit)
            else:
                self.running[future] = unit
                future.add_done_callback(self.done.put)

    def _take(self, size: int) -> list[Item]:
        """Up to ``size`` items from the input iterator; an error it raises is
        kept for its turn, after the items taken before it."""
        batch: list[Item] = []
        try:
            if size == 1:
                # One item per unit (a subtask's map): no islice per item.
                batch.append(next(self.items))
            else:
                # extend() keeps what it took if the input raises midway.
                batch.extend(itertools.islice(self.items, size))
        except StopIteration:
            pass
        except Exception as exc:
            # The input failed (not Ctrl-C): hand out what was taken, then raise it.
            self.input_error = exc
            self.exhausted = True
        return batch

    def finish(self) -> None:
        """The map is over: no more input, cancel what has not started."""
        self.exhausted = True
        self.items = iter(())
        self.sequence = None
        self.input_error = None
        self.cancel()

    def cancel(self) -> None:
        # cancel_notified: whoever waits on these futures with
        # concurrent.futures.wait (the Dask backend's shutdown) sees them done.
        window = self.window
        while window:
            cancel_notified(window.popleft().future)
        running = self.running
        while running:
            cancel_notified(running.popitem()[0])

    def cancel_units(self) -> None:
        """Cancel every unit in flight, from any thread, while another thread
        may be inside the map (an ``amap`` closed while it waits): the units
        stay where they are for that thread, which finds its own cancelled
        and ends the map. A unit of a ``stop_on_cancel`` task that is running
        is stopped (``_stop``). ``list()`` of a deque or dict runs in C, under
        the GIL: a snapshot the other thread cannot change halfway."""
        for unit in list(self.window):
            cancel_notified(unit.future)
        for future in list(self.running):
            cancel_notified(future)

    # -------------------------------------------------------------- output

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def next_unit(self) -> tuple[list[Any], BaseException | None] | None:
        """The next unit (ordered: the oldest; unordered: the first completed),
        waiting for it: its values up to its first failed item, and that
        item's exception (or None); None at the end of the input."""
        if self.ordered:
            window = self.window
            if not window:
                return None
            settled = self.settle(window[0])  # a timeout leaves it to finish()
            unit = window.popleft()
        else:
            if not self.running:
                return None
            unit = self.running.pop(self.next_completed())
            settled = self.settle(unit)
        self.sizer.confirm()
        if self.buffersize is None:
            # Bounded by units: what is taken no longer counts.
            taken = unit.count
            if self.merge_ready:
                self.held_out = 0  # the previous ones are all handed out by now
                if not unit.is_chunk and settled[1] is None:
                    self.held_out = self.take_ready(settled[0])
                    taken += self.held_out
            self.in_flight -= taken
            self.fill()
        return settled

    def take_ready(self, values: list[Any]) -> int:
        """Append to ``values`` those of the one-item units next in turn that
        have already succeeded; return how many: one hand-out, in order, for
        the values that finished together, not a Python round per item."""
        taken = 0
        if self.ordered:
            window = self.window
            while window:
                head = window[0]
                future: Any = head.future
                if head.is_chunk or future._state != FINISHED or future._exception is not None:
                    break
                window.popleft()
                values.append(future._result)
                taken += 1
            return taken
        if self.first_done is not None:
            return 0
        done = self.done
        running = self.running
        while True:
            try:
                future = done.get_nowait()
            except queue.Empty:
                return taken
            unit = running.get(future)
            if (
                unit is None
                or unit.is_chunk
                or future._state != FINISHED
                or future._exception is not None
            ):
                self.first_done = future  # handed out in its own turn, next
                return taken
            del running[future]
            values.append(future._result)
            taken += 1

    def hand_out(self, values: list[Any]) -> Iterator[Any]:
        """An iterator, all in C, that hands out ``values`` in order and keeps
        none of them once handed out."""
        if len(values) > 1:
            values.reverse()
        self.current = values
        # list.pop(values) takes no index to parse: the cheapest C step per value.
        left = self.left = itertools.repeat(values, len(values))
        # (pyright cannot type list.pop unbound: its self type, list[T], is unsolved)
        return map(list.pop, left)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]

    def drop_current(self) -> None:
        """Hand out nothing more of the current unit (``close()``)."""
        deque(self.left, maxlen=0)  # exhausts the pops left, in C
        self.current.clear()

    def end(self) -> None:
        error = self.input_error
        if error is not None:
            self.input_error = None
            raise error

    def settle(self, unit: _Unit) -> tuple[list[Any], BaseException | None]:
        """Wait for ``unit``; its values up to its first failed item, and that
        item's exception (or None)."""
        future: Any = unit.future
        if future._state != FINISHED:
            try:
                _exception(future, self.remaining())
            except CancelledError as cancelled:
                return [], cancelled
        # FINISHED, which never changes again: its outcome is read without the
        # future's lock: a subtask map settles one unit per item, and a task
        # that held a compute slot finds most of them finished at once: the
        # lock would add a lock round to nearly every value handed out.
        exc = future._exception
        if exc is not None:
            return [], exc
        value = future._result
        if not unit.is_chunk:
            return [value], None
        if type(value) is ChunkValues:
            # Every item succeeded: the values as they are.
            return value, None
        values: list[Any] = []
        for ok, item in value:
            if not ok:
                return values, item
            values.append(item)
        return values, None

    def next_completed(self) -> Future[Any]:
        future = self.first_done
        if future is not None:
            self.first_done = None
            return future
        done = self.done
        while True:
            try:
                return done.get_nowait()
            except queue.Empty:
                pass
            # Nothing finished yet: run one unstarted subtask here rather than
            # block (a pool thread waiting here must never deadlock its pool).
            if is_helper() and self.run_one_unstarted():
                continue
            return self.wait_completed()

    def wait_completed(self) -> Future[Any]:
        """Block until a unit completes (or the map's timeout passes)."""
        done = self.done
        got: list[Future[Any]] = []

        def take(timeout: float | None) -> bool:
            try:
                got.append(done.get(timeout=timeout))
            except queue.Empty:
                return False
            return True

        remaining = self.remaining()
        with IN_NESTPOOL:
            if not wait_for(take, None if remaining is None else max(0.0, remaining)):
                raise FuturesTimeoutError()
        return got[0]

    def run_one_unstarted(self) -> bool:
        for future in self.running:
            if isinstance(future, SubtaskFuture) and future.pending_work():
                future.run_here(helping=True)
                return True
        return False


def _exception(future: Future[Any], timeout: float | None) -> BaseException | None:
    """``future.exception(timeout)``, its wait going through ``wait_for``:
    in slices in the main thread (Ctrl-C), and giving a task thread's compute
    slot up while it blocks (a ``SubtaskFuture`` does both itself)."""
    if type(future) is SubtaskFuture or future.done():
        return future.exception(timeout)
    with IN_NESTPOOL:
        wait_for(functools.partial(_done_within, future), timeout)
    return future.exception(0)  # its value, its exception, or TimeoutError


def _done_within(future: Future[Any], timeout: float | None) -> bool:
    """Wait up to ``timeout`` for ``future``; True if it is done."""
    try:
        future.exception(timeout)
    except FuturesTimeoutError:
        return False
    except CancelledError:
        pass
    return True


def iter_units(state: MapState) -> Generator[Iterator[Any], None, None]:
    """The values of a map, a unit at a time: an iterator over each unit's
    values, in turn; an item's exception is raised in its turn, after the
    values before it, and ends the map (as ``concurrent.futures.Executor.map``
    does).

    ``ChunkedMap`` (an ``itertools.chain`` over this) hands the values out
    one by one in C: Python runs here once per unit, not once per item (on
    the tiny-task hot path a Python call per item would dominate). With a
    ``buffersize`` the bound counts items exactly, so each value goes out on
    its own, after its count.
    """
    exact = state.buffersize is not None
    try:
        while True:
            settled = state.next_unit()
            if settled is None:
                state.end()
                return
            values, failure = settled
            del settled
            if not exact:
                if values:
                    yield state.hand_out(values)
            else:
                values.reverse()
                while values:
                    # Taken but not yet handed out <= buffersize: this one
                    # leaves the count as it goes out.
                    state.in_flight -= 1
                    state.fill()
                    yield state.hand_out([values.pop()])
            del values
            if failure is not None:
                try:
                    raise failure
                finally:
                    del failure
    finally:
        # The end, an item's error, a timeout, Ctrl-C, close() or a dropped
        # iterator: what has not started is cancelled.
        state.finish()
