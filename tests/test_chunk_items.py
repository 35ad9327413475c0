"""Whatever one item of a chunk raises, ``SystemExit``, ``KeyboardInterrupt``
or another ``BaseException``, is that item's outcome: the other items of the
chunk still run, whichever kind of chunk it is (a process task's, a
subtask's in the parent or in a worker, the Dask backend's)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from nestpool import Pool
from tests import fault_tasks as ft

pytestmark = pytest.mark.timeout(60)

KINDS = ["SystemExit", "KeyboardInterrupt", "CustomBaseError"]


def _ran(log: Path) -> list[int]:
    return sorted(int(line) for line in log.read_text().split())


def _take_until_error(values: Iterable[int]) -> tuple[list[int], str]:
    taken: list[int] = []
    try:
        for value in values:
            taken.append(value)  # noqa: PERF402 - what came before the error
    except BaseException as exc:
        return taken, type(exc).__name__
    return taken, ""


@pytest.mark.parametrize("kind", KINDS)
def test_one_item_of_a_process_task_chunk(kind: str, tmp_path: Path) -> None:
    log = tmp_path / "ran"
    with Pool(processes=1, threads=2, start_method="forkserver"):
        mapped = ft.raise_at_three_task.map(range(6), [kind] * 6, [str(log)] * 6, chunksize=6)
        assert _take_until_error(mapped) == ([0, 10, 20], kind)
        assert _ran(log) == [0, 1, 2, 3, 4, 5]  # the items after it ran too
        # and the pool goes on
        assert list(ft.raise_at_three_task.map([1, 2], ["x"] * 2, [str(log)] * 2)) == [10, 20]


@pytest.mark.parametrize("kind", KINDS)
def test_one_item_of_a_subtask_chunk_in_the_parent(kind: str, tmp_path: Path) -> None:
    log = tmp_path / "ran"
    with Pool(processes=1, threads=2):
        mapped = ft.raise_at_three_subtask.map(range(6), [kind] * 6, [str(log)] * 6, chunksize=6)
        assert _take_until_error(mapped) == ([0, 10, 20], kind)
        assert _ran(log) == [0, 1, 2, 3, 4, 5]
        assert ft.raise_at_three_subtask(1, kind, str(log)).result(timeout=30) == 10


@pytest.mark.parametrize("kind", KINDS)
def test_one_item_of_a_subtask_chunk_in_a_worker(kind: str, tmp_path: Path) -> None:
    log = tmp_path / "ran"
    with Pool(processes=1, threads=2, start_method="forkserver"):
        outcome = ft.map_subtasks_raising_at_three(kind, str(log)).result(timeout=30)
        assert outcome == ([0, 10, 20], kind)
        assert _ran(log) == [0, 1, 2, 3, 4, 5]
