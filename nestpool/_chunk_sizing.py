"""How big a map's next chunk is: fixed, or adapted to the measured time of
an item and, when known, the input's length.

What it owns: ``ChunkSizer`` and the chunk-size constants, and
``planned_chunk``, the plan for an input of known length. ``MapState``
(``_map_units``) asks it for each chunk's size.

It must never submit, wait for or hold a unit: it only answers sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = [
    "CHUNKS_PER_SLOT",
    "CONFIRMED_GROWTH",
    "FEW_CHUNKS_MIN_ITEMS",
    "FULL_CHUNKS_PER_SLOT",
    "MAX_AUTO_CHUNK",
    "MIN_CHUNK_SECONDS",
    "SINGLE_CHUNK_SECONDS",
    "TARGET_CHUNK_SECONDS",
    "ChunkSizer",
    "planned_chunk",
]

#: auto chunksize aims at chunks of about this many seconds of work
TARGET_CHUNK_SECONDS = 0.02
MAX_AUTO_CHUNK = 8192
#: with no buffersize, this many chunks per worker slot are kept in flight
CHUNKS_PER_SLOT = 4
#: ... but no more items than this many full-size automatic chunks per slot:
#: chunks that large are tiny items, for which one running and one waiting
#: per slot keep the workers busy, and more only costs the parent memory
#: (with this bound a map over millions of items keeps the parent within a
#: few MB).
FULL_CHUNKS_PER_SLOT = 2
#: how much larger than the last one a chunk may be once the map's own items
#: have been measured (before that: twice)
CONFIRMED_GROWTH = 8
#: a map of known length goes in fewer chunks than ``CHUNKS_PER_SLOT`` per
#: slot, down to one, where those would each be shorter than this: a worker
#: is only sent its next chunk once it has returned the last one, so every
#: chunk past a worker's first costs it a round trip through the parent
#: (0.1-0.2 ms here), which is most of a short map of tiny items
MIN_CHUNK_SECONDS = 0.005
#: ... but only a map with at least this many items per slot: a measurement
#: taken on quicker calls (a warm-up) must not turn a short list of slow items
#: into one chunk per worker (a progress bar, or ``ordered=False``, would see
#: its values in a few large pieces); maps of tiny items are long
FEW_CHUNKS_MIN_ITEMS = 64
#: a map of known length whose items all together take less than this goes
#: in one chunk, to one worker: a second worker would save it half of that,
#: and cost it a round trip more through the parent (a send, a result and a
#: wake-up each way: 60-200 us here); 1,000 trivial calls took 200 us in one
#: chunk against 243 us in two
SINGLE_CHUNK_SECONDS = 0.0001


class ChunkSizer:
    """Chooses the next chunk's size: fixed, or adapted to measured item time.

    The automatic size aims at ``TARGET_CHUNK_SECONDS`` of work per chunk
    once the workers have reported how long an item takes, so tiny tasks are
    not dominated by dispatch cost and long ones still spread out. Nothing
    measured yet: one item per chunk.

    When the input's length is known (a list, range or tuple: ``MapState``
    passes what is left of it), the chunks are planned from it and the
    measured item time at once, as ``multiprocessing.Pool.map`` plans them
    from the length alone (``planned_chunk``): ``CHUNKS_PER_SLOT`` even
    chunks per worker slot, fewer (down to one) where those would be shorter
    than ``MIN_CHUNK_SECONDS``, never more work per chunk than the target. A
    short map of tiny items then takes one round trip per worker, not the
    dozen a ramp from one item costs; the plan's at least one chunk per slot
    (``CHUNKS_PER_SLOT`` for a short list) is what keeps a warm-up's quick
    measurement from putting the map on one worker.

    Otherwise (an iterator, or the length known only once the first result is
    back) the size grows step by step: until the map's own first result is
    back (``confirm()``) it at most doubles from one chunk to the next (the
    measurement may come from an earlier, quicker call of the task, a warm-up
    with no work, which must not put a whole map into one chunk on one
    worker); once this map's items have been measured too, it grows up to
    ``CONFIRMED_GROWTH`` times a chunk, so a map of tiny items reaches
    full-size chunks in a few steps rather than a dozen round trips.
    """

    __slots__ = ("cap", "confirmed", "fixed", "last", "measure", "plan", "ramp", "slots")

    def __init__(
        self,
        chunksize: int | None,
        measure: Callable[[], float | None] | None,
        cap: int,
        slots: int = 1,
    ) -> None:
        self.fixed: int | None = chunksize
        self.measure: Callable[[], float | None] | None = measure
        self.cap: int = max(1, cap)
        self.slots: int = max(1, slots)
        self.last: int = 0
        self.confirmed: bool = False
        #: the chunk size planned from a known length (once measured), or None
        self.plan: int | None = None
        #: the plan came after chunks sized without it: keep the ramp's growth
        self.ramp: bool = False

    def confirm(self) -> None:
        """The map's own first result is back: the measurement includes it."""
        self.confirmed = True

    def __call__(self, remaining: int | None = None) -> int:
        """The next chunk's size; ``remaining``: the items left in an input
        of known length (None: unknown)."""
        if self.fixed is not None:
            return min(self.fixed, self.cap)
        seconds = self.measure() if self.measure is not None else None
        if seconds is None:
            size = 1
        elif remaining is not None:
            plan = self.plan
            if plan is None:
                plan = self.plan = planned_chunk(remaining, seconds, self.slots, self.cap)
                self.ramp = self.last > 0
            # Measured again each time: items slower than the measurement the
            # plan was made with (a warm-up's) get smaller chunks from here on.
            # Not clamped to MAX_AUTO_CHUNK: the plan has its own bound (a
            # slot's share of what a map keeps in flight), and a plan of
            # 10,000 items per slot cut to 8,192 sent a third chunk, a round
            # trip more on the critical path, for a 20,000-item map.
            size = min(plan, _work_bound(seconds))
            if not self.ramp:
                self.last = size
                return size
        else:
            size = min(_work_bound(seconds), MAX_AUTO_CHUNK, self.cap)
        growth = CONFIRMED_GROWTH if self.confirmed else 2
        size = min(size, max(1, growth * self.last))
        self.last = size
        return size


def _work_bound(seconds: float) -> int:
    """Items per chunk for at most ``TARGET_CHUNK_SECONDS`` of work."""
    return max(1, int(TARGET_CHUNK_SECONDS / seconds)) if seconds else 1 << 62


def planned_chunk(length: int, seconds: float, slots: int, cap: int) -> int:
    """The chunk size for ``length`` items of ``seconds`` each over ``slots``.

    ``CHUNKS_PER_SLOT`` chunks per slot, or fewer, down to one, where those
    would be shorter than ``MIN_CHUNK_SECONDS`` (and the map has at least
    ``FEW_CHUNKS_MIN_ITEMS`` per slot), and a single chunk for all of a map
    that is less work than ``SINGLE_CHUNK_SECONDS``; each at most ``TARGET_CHUNK_SECONDS``
    of work, and at most ``cap`` items or a slot's share of the items a map
    keeps in flight (``FULL_CHUNKS_PER_SLOT`` full-size chunks). Evened out:
    a whole number of chunks per slot, so that no worker is left with a short
    last chunk while another runs a full one.
    """
    if length <= slots:
        return 1
    if length * seconds < SINGLE_CHUNK_SECONDS and length >= FEW_CHUNKS_MIN_ITEMS * slots:
        return min(length, cap, FULL_CHUNKS_PER_SLOT * MAX_AUTO_CHUNK)
    per_slot = length / slots
    chunks_per_slot = CHUNKS_PER_SLOT
    if per_slot >= FEW_CHUNKS_MIN_ITEMS:
        chunks_per_slot = max(1, min(CHUNKS_PER_SLOT, int(per_slot * seconds / MIN_CHUNK_SECONDS)))
    size = math.ceil(length / (chunks_per_slot * slots))
    size = min(size, _work_bound(seconds))
    size = max(1, min(size, FULL_CHUNKS_PER_SLOT * MAX_AUTO_CHUNK, cap))
    chunks = math.ceil(math.ceil(length / size) / slots) * slots
    return math.ceil(length / chunks)
