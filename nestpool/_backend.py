"""The one interface between ``Pool`` and whatever runs its process tasks.

What it owns:

- ``Work``: what one call or one map runs, in every form a backend may want
  it (its name for errors, the plain callable, the pickled callable for
  workers of a given reach, the per-call timeout and retries). A decorated task's
  ``TaskOptions`` is one as it is, so a routed call allocates nothing for it.
- ``Backend``: the protocol ``Pool`` delegates to, as httpx's client does to
  its transport: ``submit``, ``map``, ``shutdown``, ``terminate`` and the few
  numbers ``Pool`` reports. Three classes implement it: ``InlineBackend``
  (``processes=0``, ``_inline``), ``LocalBackend`` (the local process engine,
  ``_local``) and ``DaskBackend`` (``Pool(client=...)``, ``_dask``). ``Pool``
  never asks which one it holds.
- ``WorkerBackend``: the part the two backends that send work to worker
  processes share, written once: pickling a call, cutting a map into chunks
  and sizing them, failing the items of a chunk that cannot be pickled alone
  while the others still run, and forwarding a cancel to what was sent. A
  subclass only says how its work is packed and sent (``pack_call``,
  ``pack_items``, ``send``) and what it measures (``slots``,
  ``item_seconds``).

It must never start a process, touch the dispatcher's tables or import Dask:
those are the subclasses'.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, ClassVar, Protocol, TypeVar

from ._collate import (
    CHUNKS_PER_SLOT,
    FULL_CHUNKS_PER_SLOT,
    MAX_AUTO_CHUNK,
    ChunkedMap,
    ChunkSizer,
    Item,
    Outcome,
)
from ._errors import TaskPicklingError
from ._futures import cancel_notified, start_unless_cancelled
from ._map_iterator import MapIterator
from ._reach import Reach
from ._serialize import FunctionPayload, as_outcomes, pickling_error

__all__ = ["Backend", "Work", "WorkerBackend"]

T = TypeVar("T")


class Work(Protocol):
    """What a call or a map runs (``TaskOptions`` is one; ``_calls.CallableWork``
    another)."""

    @property
    def name(self) -> str:
        """The name in errors, logs and Dask's dashboard."""
        ...

    @property
    def fn(self) -> Callable[..., Any]:
        """The plain callable, for running it here."""
        ...

    @property
    def timeout(self) -> float | None:
        """Seconds one call may run, or None."""
        ...

    @property
    def retries(self) -> int:
        """How many more tries a call whose worker died or timed out gets."""
        ...

    @property
    def stop_on_cancel(self) -> bool:
        """True when ``cancel()`` on a running call's future stops its worker."""
        ...

    def get_payload(self, reach: Reach = "spawned") -> FunctionPayload:
        """The pickled callable a worker of that reach runs."""
        ...


class Backend(Protocol):
    """What runs a pool's process tasks. ``Pool`` validates, owns the
    lifecycle and the routing, and hands the work here."""

    def submit(self, work: Work, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        """Run one call; return its future (a pickling failure fails the
        future, never the call)."""
        ...

    def map(
        self,
        work: Work,
        iterables: tuple[Iterable[Any], ...],
        *,
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        timeout: float | None,
        submit_all: bool = False,
    ) -> MapIterator[Any]:
        """Run ``work`` over the zipped iterables, lazily; iterate the values.
        ``submit_all``: ``Executor.map``'s way instead: every call submitted
        now, and still run if the iterator is dropped before its first value.

        Raises:
            PoolClosedError: the pool was shut down before its first task.
        """
        ...

    def processes(self) -> int:
        """Worker processes (0: inline)."""
        ...

    def slots(self) -> int:
        """How many process tasks run at once (at least 1)."""
        ...

    def worker_pids(self) -> list[int]:
        """The pids of the live worker processes."""
        ...

    def shutdown(self, *, wait: bool, cancel_futures: bool) -> None:
        """Take no more work; cancel what has not started if asked; wait."""
        ...

    def terminate(self) -> None:
        """Stop now: cancel what has not started, stop what runs if it can."""
        ...

    def ready(self) -> None:
        """Start what runs the work, if it is not running yet (it may block:
        ``async with`` calls it in a helper thread).

        Raises:
            PoolClosedError: it never will run (the pool was shut down).
        """
        ...

    def describe(self) -> str:
        """The backend's part of the pool's repr."""
        ...


class WorkerBackend:
    """A backend that pickles its work and sends it to worker processes.

    ``submit`` and ``map`` are written here once; a subclass packs and sends.
    """

    #: how far the callables sent must reach (see ``_reach.Reach``)
    reach: Reach = "spawned"
    #: True when the items of a chunk share one deadline: then a map of a
    #: timed task goes one item per chunk, or quick items batched after a
    #: slow one would be stopped with it.
    chunk_shares_deadline: ClassVar[bool] = False

    # ------------------------------------------------------------ subclass part

    def slots(self) -> int:
        """How many process tasks run at once (at least 1)."""
        raise NotImplementedError

    def item_seconds(self, name: str) -> float | None:
        """Seconds one item of task ``name`` took on a worker, if measured."""
        raise NotImplementedError

    def ready(self) -> None:
        """Called as a map starts: make sure the work can be sent.

        Raises:
            PoolClosedError: it never will be (the pool was shut down).
        """

    def pack_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """One call's arguments as they travel (raises what pickling raises)."""
        raise NotImplementedError

    def pack_items(self, items: Sequence[Any], unary: bool) -> Any:
        """A chunk's items as they travel (raises what pickling raises)."""
        raise NotImplementedError

    def send(
        self,
        work: Work,
        payload: FunctionPayload,
        packed: Any,
        items: Sequence[Any] | None,
        unary: bool,
        future: Future[Any],
    ) -> None:
        """Send one packed call (``items`` None) or chunk; resolve ``future``
        with its value, or, for a chunk, with the list of its outcomes."""
        raise NotImplementedError

    def new_future(self, work: Work) -> Future[Any]:
        """The future of one call or chunk of ``work`` (a backend that can stop
        a running call gives one that ``nestpool.stop`` reaches)."""
        return Future()

    # ------------------------------------------------------------ shared part

    def submit(self, work: Work, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        """Send one call; return its future."""
        future = self.new_future(work)
        payload = _pickled(work.name, "function", work.get_payload, self.reach)
        if isinstance(payload, TaskPicklingError):
            future.set_exception(payload)
            return future
        packed = _pickled(work.name, "argument", self.pack_call, args, kwargs)
        if isinstance(packed, TaskPicklingError):
            future.set_exception(packed)
            return future
        self.send(work, payload, packed, None, False, future)
        return future

    def map(
        self,
        work: Work,
        iterables: tuple[Iterable[Any], ...],
        *,
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
        timeout: float | None,
        submit_all: bool = False,
    ) -> ChunkedMap[Any]:
        """Map ``work`` over the workers: lazy and bounded, one chunk of items
        per unit (with ``submit_all``, every unit submitted now, as
        ``Executor.map``). ``chunksize=None`` sizes the chunks from how long an
        item took on the workers and, for an input of known length, from that
        length and the slots (``ChunkSizer``)."""
        if work.timeout is not None and (chunksize is None or self.chunk_shares_deadline):
            chunksize = 1  # a timeout is per call: never batch timed calls
        self.ready()
        slots = self.slots()
        cap = buffersize if buffersize is not None else 1 << 30
        if chunksize is None and buffersize is not None:
            cap = max(1, buffersize // (2 * slots))
        # One iterable: a chunk carries the bare arguments (``unary``), not
        # 1-tuples of them.
        unary = len(iterables) == 1
        return ChunkedMap(
            iterables,
            functools.partial(self.submit_unit, work, unary=unary),
            ChunkSizer(chunksize, functools.partial(self.item_seconds, work.name), cap, slots),
            ordered=ordered,
            buffersize=buffersize,
            max_units=sys.maxsize if submit_all else CHUNKS_PER_SLOT * slots,
            timeout=timeout,
            unary=unary,
            max_items=(
                FULL_CHUNKS_PER_SLOT * MAX_AUTO_CHUNK * slots
                if chunksize is None and not submit_all
                else None
            ),
            cancel_on_drop=not submit_all,
        )

    def submit_unit(
        self, work: Work, items: Sequence[Any], *, unary: bool
    ) -> tuple[Future[Any], bool]:
        """Send one chunk of a map (``_collate.SubmitUnit``: always a chunk
        here, its future resolved with the list of the items' outcomes)."""
        future = self.new_future(work)
        payload = _pickled(work.name, "function", work.get_payload, self.reach)
        if isinstance(payload, TaskPicklingError):
            future.set_exception(payload)
            return future, True
        packed = _pickled(work.name, "argument", self.pack_items, items, unary)
        if isinstance(packed, TaskPicklingError):
            return self._submit_picklable_items(work, payload, items, unary), True
        self.send(work, payload, packed, items, unary, future)
        return future, True

    def _submit_picklable_items(
        self, work: Work, payload: FunctionPayload, items: Sequence[Any], unary: bool
    ) -> Future[Any]:
        """A chunk did not pickle: fail the bad items alone, send the others
        as a chunk of their own, and merge its outcomes back in place."""
        outcomes: list[Outcome | None] = [None] * len(items)
        good: list[int] = []
        for index, args in enumerate(items):
            error = _pickled(work.name, "argument", self.pack_items, [args], unary)
            if isinstance(error, TaskPicklingError):
                outcomes[index] = (False, error)
            else:
                good.append(index)
        future: Future[Any] = Future()
        if not good:
            future.set_result(outcomes)
            return future
        inner: Future[Any] = Future()
        good_items: list[Item] = [items[i] for i in good]

        def merge(done: Future[Any]) -> None:
            if done.cancelled():
                cancel_notified(future)
                return
            exc = done.exception()
            sent = None if exc is not None else as_outcomes(done.result())
            for position, index in enumerate(good):
                outcomes[index] = (False, exc) if sent is None else sent[position]
            if start_unless_cancelled(future):  # False: its map was closed
                future.set_result(outcomes)

        def forward_cancel(outer: Future[Any]) -> None:
            # The map cancels the future it holds: the items sent must not run.
            if outer.cancelled():
                cancel_notified(inner)

        inner.add_done_callback(merge)
        future.add_done_callback(forward_cancel)
        self.send(work, payload, self.pack_items(good_items, unary), good_items, unary, inner)
        return future


def _pickled(name: str, what: str, pack: Callable[..., T], *args: Any) -> T | TaskPicklingError:
    """``pack(*args)``: user data pickled; or, if that raised, the
    ``TaskPicklingError`` saying which task's ``what`` did not pickle (whatever
    user code raised, ``SystemExit`` included, fails that one call).

    A ``KeyboardInterrupt`` that does not happen again when the pickling is
    tried once more was a Ctrl-C that landed there, not the data's
    ``__reduce__`` raising it: it is raised again, for the caller, instead of
    failing a future and being lost."""
    try:
        return pack(*args)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and _packs(pack, args):
            raise
        return pickling_error(name, what, exc)


def _packs(pack: Callable[..., object], args: tuple[Any, ...]) -> bool:
    """Whether ``pack(*args)`` succeeds when tried again."""
    try:
        pack(*args)
    except BaseException:
        return False
    return True
