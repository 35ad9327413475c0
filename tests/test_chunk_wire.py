"""A chunk's wire format, lean for tiny tasks, keeps every item's own outcome.

A chunk travels as positional-argument tuples and, when every item succeeded,
comes back as its bare values (``ChunkValues``); otherwise as one
``(ok, value_or_exception)`` per item. These tests send chunks straight to the
dispatcher and check each item's outcome: values, exceptions, unpicklable
results and arguments, and a worker killed in the middle of a chunk.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from nestpool import Pool, TaskPicklingError, WorkerDiedError
from nestpool._dispatcher import new_task_id
from nestpool._records import Task
from nestpool._serialize import ChunkValues, as_outcomes, dumps, dumps_builtins
from tests.helpers import local_engine

from . import perf_tasks

pytestmark = pytest.mark.timeout(60)


def _send_chunk(pool: Pool, items: list[tuple[Any, ...]]) -> list[tuple[bool, Any]] | ChunkValues:
    options = perf_tasks.chunk_item._self_options
    future: Future[Any] = Future()
    task = Task(
        new_task_id(), options.name, options.get_payload(), dumps(items), future, None, items
    )
    local_engine(pool).get_dispatcher().submit(task)
    result: list[tuple[bool, Any]] | ChunkValues = future.result(timeout=30)
    return result


def _expected(x: int, kill_at: int = -1) -> object:
    if x == kill_at:
        return WorkerDiedError
    if x % 7 == 3:
        return ValueError
    if x % 11 == 5:
        return TaskPicklingError
    return x * 2


def _kinds(outcomes: list[tuple[bool, Any]]) -> list[object]:
    return [value if ok else type(value) for ok, value in outcomes]


def test_a_chunk_of_successes_comes_back_as_its_values(start_method: str) -> None:
    items = [(x,) for x in (0, 1, 2, 4, 6, 8)]
    with Pool(1, start_method=start_method) as pool:
        result = _send_chunk(pool, items)
    assert type(result) is ChunkValues
    assert list(result) == [0, 2, 4, 8, 12, 16]
    assert as_outcomes(result) == [(True, v) for v in (0, 2, 4, 8, 12, 16)]


def test_each_item_of_a_chunk_keeps_its_own_outcome(start_method: str) -> None:
    items = [(x,) for x in range(30)]
    with Pool(1, start_method=start_method) as pool:
        result = _send_chunk(pool, items)
    assert type(result) is not ChunkValues
    assert _kinds(as_outcomes(result)) == [_expected(x) for x in range(30)]
    ok, error = as_outcomes(result)[3]
    assert not ok and str(error) == "bad 3"


def test_a_death_mid_chunk_fails_only_the_running_item(start_method: str, tmp_path: Path) -> None:
    marker = str(tmp_path / "killed.always")
    items = [(x, 12, marker) for x in range(30)]
    with Pool(2, start_method=start_method) as pool:
        result = _send_chunk(pool, items)
        # the pool goes on
        assert list(perf_tasks.chunk_item.map(range(3))) == [0, 2, 4]
    assert _kinds(as_outcomes(result)) == [_expected(x, 12) for x in range(30)]
    # Once if it ran with its own mark, twice if in a batch of quick items
    # with one mark (the second death names it).
    assert perf_tasks.runs_of(marker) in (1, 2)


def test_an_unpicklable_argument_fails_its_item_alone() -> None:
    import threading

    options = perf_tasks.chunk_item._self_options
    items: list[tuple[Any, ...]] = [(0,), (1,), (threading.Lock(),), (2,)]
    with Pool(1) as pool:
        future, is_chunk = local_engine(pool).submit_unit(options, items, unary=False)
        outcomes = future.result(timeout=30)
    assert is_chunk
    assert _kinds(outcomes) == [0, 2, TaskPicklingError, 4]


def test_map_over_chunks_yields_the_values_in_order() -> None:
    with Pool(2):
        values = list(perf_tasks.chunk_item.map([x for x in range(2000) if _expected(x) == 2 * x]))
    assert values == [2 * x for x in range(2000) if _expected(x) == 2 * x]


def test_a_death_mid_unary_chunk_fails_only_the_running_item(
    start_method: str, tmp_path: Path
) -> None:
    marker = str(tmp_path / "killed.always")
    items: list[Any] = [*range(12), marker, *range(13, 30)]
    options = perf_tasks.unary_item._self_options
    future: Future[Any] = Future()
    with Pool(2, start_method=start_method) as pool:
        task = Task(
            new_task_id(),
            options.name,
            options.get_payload(),
            dumps(items),
            future,
            None,
            items,
            unary=True,
        )
        local_engine(pool).get_dispatcher().submit(task)
        outcomes = as_outcomes(future.result(timeout=30))
    assert _kinds(outcomes) == [
        *(2 * x for x in range(12)),
        WorkerDiedError,
        *(2 * x for x in range(13, 30)),
    ]


def _map_to_a_killer(task: Any, marker: str, match: str | None = None) -> None:
    """Map ``task`` over 6,000 items whose item 3000 is ``marker`` (a
    ``perf_tasks.die`` marker): the 3,000 values before it, then its
    ``WorkerDiedError``; then the pool goes on."""
    items: list[Any] = [*range(3000), marker, *range(3001, 6000)]
    with Pool(2):
        values = task.map(items)
        taken = [next(values) for _ in range(3000)]
        with pytest.raises(WorkerDiedError, match=match):
            next(values)
        assert list(perf_tasks.unary_item.map(range(5))) == [0, 2, 4, 6, 8]
    assert taken == [2 * x for x in range(3000)]


def test_a_death_in_a_long_map_fails_its_item_and_loses_no_other(tmp_path: Path) -> None:
    marker = str(tmp_path / "killed.always")
    _map_to_a_killer(perf_tasks.unary_item, marker)
    # Among quick items, one mark per batch: the first death named no item,
    # the batch ran again with a mark per item, and the second named it.
    assert perf_tasks.runs_of(marker) == 2


def test_a_death_that_does_not_happen_again_among_quick_items_fails_none(
    start_method: str, tmp_path: Path
) -> None:
    # Which quick item a death interrupted is unknown; run again one by one,
    # none kills its worker, so none fails, and nothing is lost.
    marker = str(tmp_path / "killed")
    items: list[Any] = [*range(3000), marker, *range(3001, 6000)]
    with Pool(2, start_method=start_method):
        values = list(perf_tasks.unary_item.map(items))
    assert values == [*(2 * x for x in range(3000)), marker, *(2 * x for x in range(3001, 6000))]
    assert os.path.exists(marker)


def test_a_quick_item_that_kills_its_worker_counts_every_try(tmp_path: Path) -> None:
    # The batch's death is counted against the item that kills its worker
    # again: its tries and its runs are those of an item marked on its own.
    marker = str(tmp_path / "killed.always")
    task = perf_tasks.unary_item.options(retries=2)
    _map_to_a_killer(task, marker, match=r"after 3 tries \(2 retries\)")
    assert perf_tasks.runs_of(marker) == 3


def test_a_task_with_a_timeout_marks_each_item(tmp_path: Path) -> None:
    # A timeout needs the item that ran too long: each item has its mark,
    # and the death of the first run names it, quick as it is.
    _map_to_a_killer(perf_tasks.unary_item.options(timeout=60), str(tmp_path / "killed"))


def _send_unary(pool: Pool, task: Any, items: list[Any]) -> Any:
    options = task._self_options
    future: Future[Any] = Future()
    chunk = Task(
        new_task_id(),
        options.name,
        options.get_payload(),
        dumps(items),
        future,
        None,
        items,
        unary=True,
    )
    local_engine(pool).get_dispatcher().submit(chunk)
    return future.result(timeout=30)


def test_a_chunk_flushed_in_parts_comes_back_whole() -> None:
    with Pool(1) as pool:
        result = _send_unary(pool, perf_tasks.slow_item, list(range(20)))
    assert type(result) is ChunkValues
    assert list(result) == [2 * x for x in range(20)]


def test_a_death_after_plain_flushes_keeps_the_flushed_values(tmp_path: Path) -> None:
    marker = str(tmp_path / "killed")
    items: list[Any] = [*range(15), marker, *range(16, 20)]
    with Pool(2) as pool:
        outcomes = as_outcomes(_send_unary(pool, perf_tasks.slow_item, items))
    assert _kinds(outcomes) == [
        *(2 * x for x in range(15)),
        WorkerDiedError,
        *(2 * x for x in range(16, 20)),
    ]


# ------------------------------------------------------- sliced inputs
#
# A one-iterable map over a range, list or tuple takes its chunks as slices
# (a range's chunk travels as a range); a generator, item by item. Both give
# the same values, and a death mid-chunk fails only its item.


@pytest.mark.parametrize(
    "make",
    [lambda r: r, list, tuple, lambda r: (x for x in r)],
    ids=["range", "list", "tuple", "generator"],
)
def test_a_map_over_a_sequence_or_a_generator_gives_every_value_in_order(
    make: Any, start_method: str
) -> None:
    with Pool(2, start_method=start_method):
        assert list(perf_tasks.unary_item.map(make(range(20_000)))) == [
            2 * x for x in range(20_000)
        ]
        assert sorted(perf_tasks.unary_item.map(make(range(3000)), ordered=False)) == [
            2 * x for x in range(3000)
        ]
        assert list(perf_tasks.unary_item.map(make(range(500)), buffersize=7)) == [
            2 * x for x in range(500)
        ]
        assert list(perf_tasks.unary_item.map(make(range(0)))) == []


def test_a_death_mid_chunk_of_a_range_fails_only_its_item(start_method: str) -> None:
    base = perf_tasks.KILL_BASE + os.getpid() * 10_000
    killer = base + 3000
    marker = os.path.join(tempfile.gettempdir(), f"nestpool-range-kill-{killer}.always")
    Path(marker).unlink(missing_ok=True)
    try:
        with Pool(2, start_method=start_method):
            values = perf_tasks.range_item.map(range(base, base + 6000))
            taken = [next(values) for _ in range(3000)]
            with pytest.raises(WorkerDiedError):
                next(values)
            # the map ended at the failed item; the pool goes on
            assert list(perf_tasks.range_item.map(range(base + 3001, base + 6000))) == [
                2 * x for x in range(base + 3001, base + 6000)
            ]
        assert taken == [2 * x for x in range(base, base + 3000)]
        assert perf_tasks.runs_of(marker) == 2  # a batch's death, then its own
    finally:
        Path(marker).unlink(missing_ok=True)


def test_a_map_over_a_list_sees_items_appended_before_they_are_taken() -> None:
    # Slicing at refill time reads the list as iterating it would.
    items = list(range(10))
    with Pool(1):
        values = perf_tasks.unary_item.map(items, buffersize=2)
        first = next(values)
        items.extend(range(10, 20))
        rest = list(values)
    assert [first, *rest] == [2 * x for x in range(20)]


def test_only_builtin_values_go_as_one_pickle() -> None:
    builtin = [None, True, 3, 10**30, 1.5, 2j, "s", b"b", bytearray(b"a"), (1, [2, {3: {4}}])]
    blob = dumps_builtins(builtin)
    assert blob is not None
    assert pickle.loads(blob) == builtin
    assert pickle.loads(dumps_builtins([frozenset({1})]) or b"") == [frozenset({1})]
    # anything that names a class (which the parent might not import) does not
    for other in (ValueError("x"), Path("p"), len, int, threading.Lock()):
        assert dumps_builtins([1, other]) is None
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert dumps_builtins(deep) is None  # too deep to pickle: not an error here


def test_messages_split_across_reads_come_out_whole() -> None:
    # The dispatcher reads a worker's pipe in large reads: several messages
    # at once, or the start of one whose end comes with a later read.
    from nestpool._protocol import Result, pack, unpack
    from nestpool._workers import _take_messages

    sent = [pack(Result(i, 0, 1, True, 0.0, b"x" * (i * 40_000), True)) for i in range(4)]
    # as Connection.send_bytes frames them: a 4-byte big-endian length first
    wire = b"".join(len(blob).to_bytes(4, "big") + blob for blob in sent)
    for step in (1, 3, 4096, 1 << 16, len(wire)):
        found: list[Any] = []
        unread = bytearray()
        for at in range(0, len(wire), step):
            unread += wire[at : at + step]
            del unread[: _take_messages(unread, found)]
        assert not unread
        assert found == [unpack(blob) for blob in sent]
    # The long framing (-1, then an 8-byte length), as for 2 GiB and more.
    found = []
    long = b"\xff\xff\xff\xff" + len(sent[1]).to_bytes(8, "big") + sent[1]
    assert _take_messages(long, found) == len(long)
    assert found == [unpack(sent[1])]


def test_results_larger_than_a_read_come_back(start_method: str) -> None:
    with Pool(processes=2, start_method=start_method):
        big = perf_tasks.echo_bytes
        values = [b"%d" % i * (50_000 + i) for i in range(6)]
        assert [f.result(timeout=30) for f in [big(v) for v in values]] == values
        assert list(big.map(values)) == values
