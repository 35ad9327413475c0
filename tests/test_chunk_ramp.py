"""The automatic chunk size grows step by step: a quick earlier call of the
task (a warm-up) must not put a whole map into one chunk on one worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from nestpool import Pool
from nestpool._collate import CONFIRMED_GROWTH, MAX_AUTO_CHUNK, ChunkSizer

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
