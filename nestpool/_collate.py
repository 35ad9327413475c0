"""Collated values: the lazy, bounded, ordered-or-not ``map``.

What it owns: ``ChunkedMap``, the iterator of a map submitted in units (one
item, or a chunk of items for process tasks), which yields each item's own
value or raises its own exception at its position (ordered) or as it
completes (unordered), and whose ``close()`` or dropping cancels what has not
started; and ``run_chunk``, a chunk run in a thread. The units themselves
(their sizes, the bounds on what is in flight, waiting for them) are
``_map_units``'s.

A waiting consumer never deadlocks a thread pool: it waits on subtask futures
through ``result()`` (ordered) or runs unstarted ones itself (unordered).

It must never touch processes or the dispatcher's tables: units are submitted
through a callback.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

from ._chunk_sizing import (
    CHUNKS_PER_SLOT,
    CONFIRMED_GROWTH,
    FULL_CHUNKS_PER_SLOT,
    MAX_AUTO_CHUNK,
    ChunkSizer,
)
from ._item_loop import run_outcomes
from ._map_iterator import MapIterator
from ._map_units import Item, MapState, SubmitUnit, iter_units
from ._protocol import SHAPE_ARGS
from ._records import Outcome
from ._typing import R

# The chunk-size names are re-exported: the backends and the API import them
# from here, the one module that collates a map.
__all__ = [
    "CHUNKS_PER_SLOT",
    "CONFIRMED_GROWTH",
    "FULL_CHUNKS_PER_SLOT",
    "MAX_AUTO_CHUNK",
    "ChunkSizer",
    "ChunkedMap",
    "Item",
    "MapIterator",
    "Outcome",
    "SubmitUnit",
    "run_chunk",
]


class ChunkedMap(itertools.chain[R], MapIterator[R]):
    """The ``MapIterator`` of a map whose calls are submitted in units (an
    item, or a chunk of items): to worker processes, a Dask cluster or a
    thread pool.

    Work starts when it is made (the first units are submitted then); more
    input is pulled only as results are taken. ``close()``, leaving a
    ``with`` block, or dropping the iterator cancels what has not started.
    An item's exception is raised in its turn and ends the iteration, as
    ``concurrent.futures.Executor.map`` does: what has not started is
    cancelled and the next ``next()`` raises ``StopIteration``.
    """

    # An itertools.chain over the generator of units: chain's own C code
    # hands out each value, so a map costs no Python call per item (chain
    # comes first in the bases, so its __next__ is the one that runs). The
    # generator holds only the state (never this iterator), so dropping the
    # iterator cancels at once (a reference cycle would keep an abandoned map
    # submitting and running until the cyclic GC ran); and no value handed out
    # is kept alive here.

    _state: MapState
    _units: Generator[Iterator[Any], None, None]

    def __new__(
        cls,
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
        merge_ready: bool = False,
        cancel_on_drop: bool = True,
    ) -> ChunkedMap[R]:
        state = MapState(
            iterables,
            submit,
            sizer,
            ordered=ordered,
            buffersize=buffersize,
            max_units=max_units,
            timeout=timeout,
            unary=unary,
            max_items=max_items,
            merge_ready=merge_ready,
            cancel_on_drop=cancel_on_drop,
        )
        units = iter_units(state)
        self = super().from_iterable(units)
        assert isinstance(self, ChunkedMap)
        self._state = state
        self._units = units
        return self

    def close(self) -> None:
        """Stop: cancel every unit that has not started; drop the input."""
        state = self._state
        state.finish()
        # chain would go on with the unit it holds: leave nothing in it.
        state.drop_current()
        try:
            self._units.close()
        except ValueError:  # pragma: no cover - closed while running elsewhere
            pass

    def _cancel_units(self) -> None:
        """Cancel the units in flight now, while another thread may be in
        ``next()`` (``MapState.cancel_units``)."""
        self._state.cancel_units()


def run_chunk(fn: Callable[..., Any], items: Sequence[Item]) -> list[Outcome]:
    """Run a chunk of items in this thread; each item keeps its own outcome.

    Whatever an item raises (``SystemExit`` and ``KeyboardInterrupt`` too)
    is that item's outcome, as in a process task's chunk (the same loop runs
    both): the other items still run.
    """
    return run_outcomes(fn, items, SHAPE_ARGS, _itself)


def _itself(exc: BaseException) -> BaseException:
    return exc
