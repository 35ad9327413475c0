"""The automatic chunk size: planned at once from a known length, else grown
step by step; either way a quick earlier call of the task (a warm-up) must
not put a whole map into one chunk on one worker."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool
from nestpool._chunk_sizing import TARGET_CHUNK_SECONDS, planned_chunk
from nestpool._collate import (
    CHUNKS_PER_SLOT,
    CONFIRMED_GROWTH,
    FULL_CHUNKS_PER_SLOT,
    MAX_AUTO_CHUNK,
    ChunkSizer,
)
from nestpool._map_units import MapState
from tests.helpers import local_engine

from . import collate_tasks as ct
from .test_collate import _record_process_chunks
from .ux_helpers import meet

pytestmark = pytest.mark.timeout(60)


def test_auto_chunks_at_most_double_until_the_map_is_measured() -> None:
    sizer = ChunkSizer(None, lambda: 1e-9, 1 << 30)
    assert [sizer() for _ in range(6)] == [1, 2, 4, 8, 16, 32]
    # The map's own first result is back: tiny items reach full-size chunks
    # in a few steps.
    sizer.confirm()
    assert [sizer() for _ in range(4)] == [
        32 * CONFIRMED_GROWTH,
        min(MAX_AUTO_CHUNK, 32 * CONFIRMED_GROWTH**2),
        MAX_AUTO_CHUNK,
        MAX_AUTO_CHUNK,
    ]
    unmeasured = ChunkSizer(None, lambda: None, 1 << 30)
    assert [unmeasured() for _ in range(3)] == [1, 1, 1]
    assert [ChunkSizer(5, lambda: 1e-9, 1 << 30)() for _ in range(2)] == [5, 5]


def test_a_warm_up_call_does_not_put_a_map_on_one_worker(start_method: str, tmp_path: Path) -> None:
    with Pool(processes=2, start_method=start_method):
        assert meet("", 0).result() == 0  # a near-zero item time is recorded
        # Each item waits until both workers have run one of the map's items.
        assert list(meet.map([str(tmp_path)] * 8, range(8))) == list(range(8))


def test_a_known_length_is_planned_at_once_from_the_measured_item_time() -> None:
    # Tiny items: each of CHUNKS_PER_SLOT chunks per slot would be far shorter
    # than MIN_CHUNK_SECONDS, so one chunk per slot, planned once (what is left
    # of the input then does not shrink the chunks).
    tiny = ChunkSizer(None, lambda: 1e-6, 1 << 30, slots=2)
    assert [tiny(1000), tiny(500)] == [500, 500]
    # ... and a map that is less work than a round trip in one chunk
    tiny = ChunkSizer(None, lambda: 5e-8, 1 << 30, slots=2)
    assert tiny(1000) == 1000
    assert planned_chunk(1000, 5e-8, 2, 300) == 300  # within a buffersize's cap
    assert planned_chunk(100, 1e-9, 2, 1 << 30) == 100 // (CHUNKS_PER_SLOT * 2) + 1
    # ... above MAX_AUTO_CHUNK too (the plan's own bound): 20,000 items in
    # two chunks, not 8,192 + 8,192 + a third, a round trip more
    tiny = ChunkSizer(None, lambda: 5e-8, 1 << 30, slots=2)
    assert [tiny(20_000), tiny(10_000)] == [10_000, 10_000]
    # Chunks long enough: CHUNKS_PER_SLOT per slot, at most the target's work.
    assert planned_chunk(1000, 1e-4, 2, 1 << 30) == 1000 // (CHUNKS_PER_SLOT * 2)
    assert planned_chunk(1000, 0.01, 2, 1 << 30) == int(TARGET_CHUNK_SECONDS / 0.01)
    # A short list keeps CHUNKS_PER_SLOT per slot however quick the measurement.
    assert planned_chunk(40, 0.0, 2, 1 << 30) == 40 // (CHUNKS_PER_SLOT * 2)
    assert planned_chunk(2, 0.0, 2, 1 << 30) == 1
    # Evened out: a whole number of chunks per slot, within the bounds.
    for length in (150_000, 10**7):
        size = planned_chunk(length, 1e-9, 2, 1 << 30)
        assert size <= FULL_CHUNKS_PER_SLOT * MAX_AUTO_CHUNK
        assert -(-length // size) % 2 == 0
    assert planned_chunk(10_000, 1e-7, 2, 20) == 20  # a buffersize's cap


def test_a_planned_map_follows_a_slower_measurement() -> None:
    # A warm-up measured next to nothing; the map's items turn out slow.
    seconds = [1e-9]
    sizer = ChunkSizer(None, lambda: seconds[0], 1 << 30, slots=2)
    assert sizer(40) == 5
    seconds[0] = 1.0
    assert sizer(35) == 1


def test_a_known_length_unmeasured_starts_at_one_item_and_ramps() -> None:
    seconds: list[float | None] = [None]
    sizer = ChunkSizer(None, lambda: seconds[0], 1 << 30, slots=2)
    assert [sizer(1000), sizer(999)] == [1, 1]
    seconds[0] = 1e-6
    sizer.confirm()
    # planned (one chunk per slot of what is left), reached by the ramp
    assert [sizer(998), sizer(990), sizer(926)] == [
        CONFIRMED_GROWTH,
        CONFIRMED_GROWTH**2,
        min(499, CONFIRMED_GROWTH**3),
    ]


def test_the_length_of_a_zip_of_sequences_is_known() -> None:
    sizes: list[int] = []

    def submit(batch: Sequence[Any]) -> tuple[Future[Any], bool]:
        sizes.append(len(batch))
        return Future(), True

    def first_wave(*iterables: Iterable[Any]) -> list[int]:
        sizes.clear()
        state = MapState(
            iterables,
            submit,
            ChunkSizer(None, lambda: 1e-6, 1 << 30, slots=2),
            ordered=True,
            buffersize=None,
            max_units=8,
            timeout=None,
            unary=len(iterables) == 1,
            max_items=None,
        )
        state.finish()
        return sizes.copy()

    assert first_wave(list(range(1000)), range(3000)) == [500, 500]
    assert first_wave(tuple(range(1000))) == [500, 500]
    # an iterator: no length, the ramp
    assert first_wave(iter(range(1000))) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_a_pool_map_of_a_list_goes_in_the_planned_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    with Pool(processes=2) as pool:
        engine = local_engine(pool)
        monkeypatch.setattr(engine, "item_seconds", lambda name: 1e-6)
        sizes = _record_process_chunks(pool, monkeypatch)
        assert list(ct.twice.map(list(range(1000)))) == [2 * i for i in range(1000)]
        assert sizes == [500, 500]
        sizes.clear()
        # a short list after a quick warm-up: spread, in pieces
        assert sorted(ct.twice.map(range(40), ordered=False)) == [2 * i for i in range(40)]
        assert sizes == [5] * 8
