"""Workload 3, tiny tasks: many calls of a trivial function, dispatch cost only.

nestpool: ``task.map(range(N))`` with no chunksize (it sizes chunks itself).
Baselines: ``ProcessPoolExecutor.map`` with chunksize 1 (timed on fewer items
and extrapolated: at chunksize 1 it is slow) and with the best chunksize found
by a search in this run, ``multiprocessing.Pool.map`` (its automatic
chunksize), mpire's ``WorkerPool.map`` (its automatic chunk size) and joblib's
``Parallel`` (its automatic batching). All on the same number of processes
(the cores), workers started before timing.

Ratio: each baseline's time / nestpool's time, i.e. nestpool's throughput
relative to the baseline (above 1: nestpool is faster). The targets: at least
0.8 against the best of them, and at least 1.0 against
``ProcessPoolExecutor.map`` at its best chunksize on 200,000 items.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from benchmarks import tasks
from benchmarks._harness import Check, Result, Row, Size, Table, ratio_rows, timed, usable_cores
from nestpool import Pool

NAME = "tiny"
TITLE = "Tiny tasks: a trivial function over many items"

CHUNKSIZES = [16, 64, 256, 1024, 4096, 16384]


def _check(total: int, n: int) -> None:
    if total != n * (n - 1) // 2:
        raise AssertionError("wrong results")


def _times(fn: Callable[[], object], repeats: int) -> list[float]:
    return [timed(fn) for _ in range(repeats)]


def run(size: Size, start_method: str = "forkserver") -> Result:
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor
    from mpire import WorkerPool

    cores = usable_cores()
    n = size.pick(3000, 150_000, 150_000)
    n_many = size.pick(4000, 200_000, 200_000)
    n_cs1 = size.pick(1000, 10_000, 30_000)
    repeats = size.repeats
    context = multiprocessing.get_context(start_method)
    scale = n / n_cs1

    # Every engine is open at once (idle processes cost nothing) and the
    # repeats go round-robin over them, so that a burst of load from elsewhere
    # hits them all alike instead of one engine's repeats.
    with (
        Pool(cores, start_method=start_method),
        ProcessPoolExecutor(cores, mp_context=context) as executor,
        context.Pool(cores) as mp_pool,
        WorkerPool(n_jobs=cores, start_method=start_method, keep_alive=True) as mpire_pool,
        Parallel(n_jobs=cores) as parallel,
    ):
        list(tasks.np_tiny_warm.map(range(1000)))
        list(executor.map(tasks.identity, range(1000), chunksize=10))
        mp_pool.map(tasks.identity, range(1000))
        mpire_pool.map(tasks.identity, range(1000), progress_bar=False)
        parallel(delayed(tasks.identity)(i) for i in range(1000))

        def nestpool_map(count: int) -> Callable[[], None]:
            return lambda: _check(sum(tasks.np_identity.map(range(count))), count)

        def ppe(count: int, chunksize: int) -> Callable[[], None]:
            return lambda: _check(
                sum(executor.map(tasks.identity, range(count), chunksize=chunksize)), count
            )

        candidates = CHUNKSIZES if not size.quick else CHUNKSIZES[2:]
        search = {cs: min(_times(ppe(n, cs), 2)) for cs in candidates}
        best_cs = min(search, key=search.__getitem__)
        search3 = {cs: min(_times(ppe(n_many, cs), 2)) for cs in candidates}
        best3 = min(search3, key=search3.__getitem__)

        plan: list[tuple[Row, Callable[[], None], float]] = [
            (Row("nestpool: task.map, no chunksize", []), nestpool_map(n), 1.0),
            (
                Row(
                    "ProcessPoolExecutor.map, chunksize=1",
                    [],
                    note=f"timed on {n_cs1:,} items, x{scale:g}",
                ),
                ppe(n_cs1, 1),
                scale,
            ),
            (
                Row(
                    f"ProcessPoolExecutor.map, best chunksize={best_cs}",
                    [],
                    note="searched: "
                    + ", ".join(f"{cs}: {t * 1000:.0f} ms" for cs, t in search.items()),
                ),
                ppe(n, best_cs),
                1.0,
            ),
            (
                Row("multiprocessing.Pool.map (automatic chunksize)", []),
                lambda: _check(sum(mp_pool.map(tasks.identity, range(n))), n),
                1.0,
            ),
            (
                Row("mpire WorkerPool.map (automatic chunk size)", []),
                lambda: _check(
                    sum(mpire_pool.map(tasks.identity, range(n), progress_bar=False)), n
                ),
                1.0,
            ),
            (
                Row("joblib Parallel (automatic batching)", []),
                lambda: _check(sum(parallel(delayed(tasks.identity)(i) for i in range(n))), n),
                1.0,
            ),
        ]
        plan3: list[tuple[Row, Callable[[], None], float]] = [
            (Row("nestpool: task.map, no chunksize", []), nestpool_map(n_many), 1.0),
            (
                Row(f"ProcessPoolExecutor.map, best chunksize={best3}", []),
                ppe(n_many, best3),
                1.0,
            ),
        ]
        for _ in range(repeats):
            for row, fn, factor in [*plan, *plan3]:
                row.values.append(timed(fn) * factor)
    get_reusable_executor().shutdown(wait=True, kill_workers=True)

    nestpool = plan[0][0]
    rows = [row for row, _, _ in plan[1:]]
    many_rows = [row for row, _, _ in plan3]
    ratio_rows(rows, nestpool)  # baseline / nestpool: nestpool's relative throughput
    nestpool.ratio_min = nestpool.ratio_median = 1.0
    best = min(rows, key=lambda r: r.min)
    ratio_rows(many_rows, many_rows[0])
    assert best.ratio_min is not None and best.ratio_median is not None
    ppe_best_row = many_rows[1]
    assert ppe_best_row.ratio_min is not None and ppe_best_row.ratio_median is not None
    per_item = nestpool.min / n * 1e6
    table = Table(
        f"{n:,} calls of a trivial function, {cores} processes",
        "baseline time / nestpool time = nestpool's throughput relative to the baseline "
        "(above 1: nestpool is faster)",
        [nestpool, *rows],
        [f"nestpool: {per_item:.2f} us per item (min)"],
    )
    table3 = Table(
        f"{n_many:,} calls, nestpool vs ProcessPoolExecutor.map at its best chunksize",
        "ProcessPoolExecutor time / nestpool time",
        many_rows,
    )
    checks = [
        Check(
            f"tiny: nestpool throughput >= 0.8x the best baseline ({best.label})",
            f"{best.ratio_min:.2f}x (min), {best.ratio_median:.2f}x (median)",
            best.ratio_min >= 0.8,
        ),
        Check(
            f"tiny: {n_many:,} items, nestpool >= 1.0x ProcessPoolExecutor best",
            f"{ppe_best_row.ratio_min:.2f}x (min), {ppe_best_row.ratio_median:.2f}x (median)",
            ppe_best_row.ratio_min >= 1.0,
        ),
    ]
    setup = (
        f"{cores} worker processes for every engine, start method {start_method} (joblib: "
        "loky's); nestpool is warmed up with another task, so each timed map starts its "
        "automatic chunk size from scratch"
    )
    return Result(NAME, TITLE, setup, [table, table3], checks, {"items": n})
