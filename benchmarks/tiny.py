"""Workload 3, tiny tasks: many calls of a trivial function, dispatch cost only.

nestpool: ``task.map(range(N))`` with no chunksize (it sizes chunks itself).
Baselines: ``ProcessPoolExecutor.map`` with chunksize 1 (timed on fewer items
and extrapolated: at chunksize 1 it is slow) and with the best chunksize found
by a search in this run, loky's reusable executor at that same chunksize,
``multiprocessing.Pool.map`` (its automatic chunksize), mpire's
``WorkerPool.map`` (its automatic chunk size) and joblib's ``Parallel`` (its
automatic batching). All on the same number of processes (the cores), workers
started before timing. The engines go round-robin, each round starting one
engine later than the last, so that no engine always runs right after
another's.

Three sizes: 150,000 items, and the short maps, 1,000 and 20,000 items, where
a fixed cost per map (the first chunks' round trips) weighs most. A short map
takes milliseconds, so its engines go round-robin ``SHORT_ROUNDS`` times as
often as the long map's.

Ratio: each baseline's time / nestpool's time, i.e. nestpool's throughput
relative to the baseline (above 1: nestpool is faster). The targets: at least
0.9 against the best of them at every size, and at least 1.0 against
``ProcessPoolExecutor.map`` at its best chunksize on 200,000 items.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from benchmarks import tasks
from benchmarks._harness import Check, Result, Row, Size, Table, ratio_rows, timed, usable_cores
from nestpool import Pool

NAME = "tiny"
TITLE = "Tiny tasks: a trivial function over many items"

_T = TypeVar("_T")

CHUNKSIZES = [16, 64, 256, 1024, 4096, 16384]
#: nestpool's throughput against the best baseline, at every size
TARGET = 0.9
#: a short map's engines go round-robin this many times per repeat
SHORT_ROUNDS = 5


def _check(total: int, n: int) -> None:
    if total != n * (n - 1) // 2:
        raise AssertionError("wrong results")


def _times(fn: Callable[[], object], repeats: int) -> list[float]:
    return [timed(fn) for _ in range(repeats)]


def _search(fn: Callable[[int], Callable[[], None]], count: int, quick: bool) -> tuple[int, str]:
    """The best ``ProcessPoolExecutor.map`` chunksize for ``count`` items (no
    larger than the input: one chunk would run on one worker), and the note
    that lists what was tried."""
    candidates = [cs for cs in (CHUNKSIZES if not quick else CHUNKSIZES[2:]) if cs < count]
    candidates = candidates or CHUNKSIZES[:1]
    search = {cs: min(_times(fn(cs), 3)) for cs in candidates}
    best = min(search, key=search.__getitem__)
    return best, "searched: " + ", ".join(f"{cs}: {t * 1000:.1f} ms" for cs, t in search.items())


def _rotated(plan: list[_T], round_: int) -> list[_T]:
    """``plan`` in the order of round ``round_``: starting ``round_`` places on."""
    shift = round_ % len(plan)
    return plan[shift:] + plan[:shift]


def run(size: Size, start_method: str = "forkserver") -> Result:
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor
    from loky import get_reusable_executor as loky_executor
    from mpire import WorkerPool

    cores = usable_cores()
    n = size.pick(3000, 150_000, 150_000)
    n_many = size.pick(4000, 200_000, 200_000)
    n_cs1 = size.pick(1000, 10_000, 30_000)
    short_sizes: list[int] = size.pick([1000], [1000, 20_000], [1000, 20_000])
    repeats = size.repeats
    context = multiprocessing.get_context(start_method)
    scale = n / n_cs1

    # Every engine is open at once (idle processes cost nothing) and the
    # repeats go round-robin over them, so that a burst of load from elsewhere
    # hits them all alike instead of one engine's repeats.
    loky = loky_executor(max_workers=cores)
    with (
        Pool(cores, start_method=start_method),
        ProcessPoolExecutor(cores, mp_context=context) as executor,
        context.Pool(cores) as mp_pool,
        WorkerPool(n_jobs=cores, start_method=start_method, keep_alive=True) as mpire_pool,
        Parallel(n_jobs=cores) as parallel,
    ):
        list(tasks.np_tiny_warm.map(range(1000)))
        list(executor.map(tasks.identity, range(1000), chunksize=10))
        list(loky.map(tasks.identity, range(1000), chunksize=10))
        mp_pool.map(tasks.identity, range(1000))
        mpire_pool.map(tasks.identity, range(1000), progress_bar=False)
        parallel(delayed(tasks.identity)(i) for i in range(1000))

        def nestpool_map(count: int) -> Callable[[], None]:
            return lambda: _check(sum(tasks.np_identity.map(range(count))), count)

        def ppe(count: int) -> Callable[[int], Callable[[], None]]:
            def at(chunksize: int) -> Callable[[], None]:
                return lambda: _check(
                    sum(executor.map(tasks.identity, range(count), chunksize=chunksize)), count
                )

            return at

        def baselines(count: int) -> list[tuple[Row, Callable[[], None], float]]:
            """Every baseline at its best for ``count`` items, but
            ProcessPoolExecutor at chunksize 1 (the long map's table has it)."""
            best_cs, searched = _search(ppe(count), count, size.quick)
            return [
                (
                    Row(f"ProcessPoolExecutor.map, best chunksize={best_cs}", [], note=searched),
                    ppe(count)(best_cs),
                    1.0,
                ),
                (
                    Row(f"loky reusable executor .map, chunksize={best_cs}", []),
                    lambda: _check(
                        sum(loky.map(tasks.identity, range(count), chunksize=best_cs)), count
                    ),
                    1.0,
                ),
                (
                    Row("multiprocessing.Pool.map (automatic chunksize)", []),
                    lambda: _check(sum(mp_pool.map(tasks.identity, range(count))), count),
                    1.0,
                ),
                (
                    Row("mpire WorkerPool.map (automatic chunk size)", []),
                    lambda: _check(
                        sum(mpire_pool.map(tasks.identity, range(count), progress_bar=False)),
                        count,
                    ),
                    1.0,
                ),
                (
                    Row("joblib Parallel (automatic batching)", []),
                    lambda: _check(
                        sum(parallel(delayed(tasks.identity)(i) for i in range(count))), count
                    ),
                    1.0,
                ),
            ]

        plan: list[tuple[Row, Callable[[], None], float]] = [
            (Row("nestpool: task.map, no chunksize", []), nestpool_map(n), 1.0),
            (
                Row(
                    "ProcessPoolExecutor.map, chunksize=1",
                    [],
                    note=f"timed on {n_cs1:,} items, x{scale:g}",
                ),
                ppe(n_cs1)(1),
                scale,
            ),
            *baselines(n),
        ]
        short_plans: list[list[tuple[Row, Callable[[], None], float]]] = [
            [
                (Row("nestpool: task.map, no chunksize", []), nestpool_map(count), 1.0),
                *baselines(count),
            ]
            for count in short_sizes
        ]
        best3, _ = _search(ppe(n_many), n_many, size.quick)
        plan3: list[tuple[Row, Callable[[], None], float]] = [
            (Row("nestpool: task.map, no chunksize", []), nestpool_map(n_many), 1.0),
            (
                Row(f"ProcessPoolExecutor.map, best chunksize={best3}", []),
                ppe(n_many)(best3),
                1.0,
            ),
        ]
        # Each round starts one engine later: none always runs first, right
        # after the last engine of the round before (whose pool may still be
        # winding down in the background), nor always last.
        for round_ in range(repeats * SHORT_ROUNDS):
            for short_plan in short_plans:
                for row, fn, factor in _rotated(short_plan, round_):
                    row.values.append(timed(fn) * factor)
        for round_ in range(repeats):
            for row, fn, factor in _rotated([*plan, *plan3], round_):
                row.values.append(timed(fn) * factor)
    loky.shutdown(wait=True, kill_workers=True)
    for short_plan in short_plans:
        for row, _, _ in short_plan:  # milliseconds: shown with a decimal
            row.values = [value * 1000 for value in row.values]
            row.unit = "ms"
    get_reusable_executor().shutdown(wait=True, kill_workers=True)

    sized: list[tuple[int, list[Row]]] = [
        (n, [row for row, _, _ in plan]),
        *(
            (count, [row for row, _, _ in p])
            for count, p in zip(short_sizes, short_plans, strict=True)
        ),
    ]
    sized.sort(key=lambda pair: pair[0])
    tables: list[Table] = []
    checks: list[Check] = []
    for count, (nestpool, *rows) in sized:
        ratio_rows(rows, nestpool)  # baseline / nestpool: nestpool's relative throughput
        nestpool.ratio_min = nestpool.ratio_median = 1.0
        best = min(rows, key=lambda r: r.min)
        assert best.ratio_min is not None and best.ratio_median is not None
        per_item = nestpool.min / count * (1e6 if nestpool.unit == "s" else 1e3)
        rounds = f", {len(nestpool.values)} rounds" if count != n else ""
        table = Table(
            f"{count:,} calls of a trivial function, {cores} processes{rounds}",
            "baseline time / nestpool time = nestpool's throughput relative to the baseline "
            "(above 1: nestpool is faster)",
            [nestpool, *rows],
            [f"nestpool: {per_item:.2f} us per item (min)"],
        )
        # The long map's table first: the report draws the first table.
        tables.insert(0 if count == n else len(tables), table)
        checks.append(
            Check(
                f"tiny: {count:,} items, nestpool throughput >= {TARGET}x the best baseline "
                f"({best.label})",
                f"{best.ratio_min:.2f}x (min), {best.ratio_median:.2f}x (median)",
                best.ratio_min >= TARGET,
            )
        )
    many_rows = [row for row, _, _ in plan3]
    ratio_rows(many_rows, many_rows[0])
    ppe_best_row = many_rows[1]
    assert ppe_best_row.ratio_min is not None and ppe_best_row.ratio_median is not None
    tables.append(
        Table(
            f"{n_many:,} calls, nestpool vs ProcessPoolExecutor.map at its best chunksize",
            "ProcessPoolExecutor time / nestpool time",
            many_rows,
        )
    )
    checks.append(
        Check(
            f"tiny: {n_many:,} items, nestpool >= 1.0x ProcessPoolExecutor best",
            f"{ppe_best_row.ratio_min:.2f}x (min), {ppe_best_row.ratio_median:.2f}x (median)",
            ppe_best_row.ratio_min >= 1.0,
        )
    )
    setup = (
        f"{cores} worker processes for every engine, start method {start_method} (joblib and "
        "loky: loky's); nestpool is warmed up with another task, so its first timed map starts "
        "with no item time measured and the later ones use what the earlier maps of the task "
        "measured, as a program that maps a task again does"
    )
    return Result(NAME, TITLE, setup, tables, checks, {"items": n, "short_items": short_sizes})
