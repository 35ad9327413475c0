"""Workload 4, memory: ``task.map`` over a huge or endless generator.

Each measurement runs in a fresh Python process (``python -m benchmarks.memory
--child ...``), so no earlier allocation hides or inflates it. There, after
the pool is started and warmed up, the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``), the map runs, and the growth is the new peak
minus the RSS just before: exact, with no sampling thread to miss a spike.
Time to the first result is from the ``map`` call to the first value.

Baseline: ``ProcessPoolExecutor.map``, which before Python 3.14 consumes its
whole input (one future per chunk) before the first value comes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks._harness import Check, Result, Row, Size, Table, peak_growth, usable_cores

NAME = "memory"
TITLE = "Memory: map over a generator of millions of items, or an endless one"

ROOT = Path(__file__).resolve().parent.parent


def numbers(count: int | None) -> Iterator[int]:
    """A generator of ``count`` items (None: endless)."""
    return iter(range(count)) if count is not None else itertools.count()


def child(kind: str, count: int, take: int | None, chunksize: int) -> dict[str, float]:
    """One measurement, in this (fresh) process."""
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from benchmarks import tasks
    from nestpool import Pool

    cores = usable_cores()
    source = numbers(None if take is not None else count)
    if kind == "nestpool":
        with Pool(cores):
            list(tasks.np_tiny_warm.map(range(1000)))
            gc.collect()
            with peak_growth() as growth:
                started = time.perf_counter()
                values = tasks.np_identity.map(source)
                first = next(values)
                first_at = time.perf_counter() - started
                taken = 1 + sum(1 for _ in itertools.islice(values, (take or count) - 1))
                values.close()
                total = time.perf_counter() - started
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(cores, mp_context=context) as executor:
            list(executor.map(tasks.identity, range(1000), chunksize=100))
            gc.collect()
            with peak_growth() as growth:
                started = time.perf_counter()
                results = executor.map(tasks.identity, source, chunksize=chunksize)
                first = next(results)
                first_at = time.perf_counter() - started
                taken = 1 + sum(1 for _ in results)
                total = time.perf_counter() - started
    assert first == 0 and taken == (take or count), (first, taken)
    return {
        "growth_mb": growth["growth_mb"],
        "exact": growth["exact"],
        "first_ms": first_at * 1000,
        "total_s": total,
    }


def measure(kind: str, count: int, take: int | None = None, chunksize: int = 1) -> dict[str, float]:
    """Run ``child`` in a fresh interpreter; return its figures."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--child",
        kind,
        str(count),
        "--chunksize",
        str(chunksize),
    ]
    if take is not None:
        command += ["--take", str(take)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory child {kind} {count} failed:\n{out.stderr}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def run(size: Size, start_method: str = "forkserver") -> Result:
    million = size.pick(20_000, 1_000_000, 1_000_000)
    endless_take = size.pick(5_000, 100_000, 100_000)
    ten_million = 10_000_000 if size.full else None
    ppe_items = size.pick(20_000, 300_000, 1_000_000)
    ppe_cs1_items = size.pick(5_000, 30_000, 200_000)
    repeats = size.repeats

    def series(
        label: str,
        kind: str,
        count: int,
        take: int | None = None,
        chunksize: int = 1,
        note: str = "",
    ) -> tuple[Row, Row]:
        figures = [measure(kind, count, take, chunksize) for _ in range(repeats)]
        growth = Row(label, [f["growth_mb"] for f in figures], unit="MB", note=note)
        first = Row(label, [f["first_ms"] for f in figures], unit="ms", note=note)
        return growth, first

    growth_rows: list[Row] = []
    first_rows: list[Row] = []
    plan: list[tuple[str, str, int, int | None, int, str]] = [
        (f"nestpool: task.map over a generator of {million:,}", "nestpool", million, None, 1, ""),
        (
            f"nestpool: task.map over an endless generator, {endless_take:,} values taken",
            "nestpool",
            endless_take,
            endless_take,
            1,
            "",
        ),
    ]
    if ten_million is not None:
        plan.append(
            (
                f"nestpool: task.map over a generator of {ten_million:,}",
                "nestpool",
                ten_million,
                None,
                1,
                "",
            )
        )
    plan += [
        (
            f"ProcessPoolExecutor.map over a generator of {ppe_items:,}, chunksize=1000",
            "ppe",
            ppe_items,
            None,
            1000,
            "",
        ),
        (
            f"ProcessPoolExecutor.map over a generator of {ppe_cs1_items:,}, chunksize=1",
            "ppe",
            ppe_cs1_items,
            None,
            1,
            "",
        ),
    ]
    for label, kind, count, take, chunksize, note in plan:
        growth, first = series(label, kind, count, take, chunksize, note)
        growth_rows.append(growth)
        first_rows.append(first)

    nestpool_growth = [r for r in growth_rows if r.label.startswith("nestpool")]
    nestpool_first = [r for r in first_rows if r.label.startswith("nestpool")]
    worst_growth = max(r.median for r in nestpool_growth)
    worst_first = max(r.median for r in nestpool_first)
    for rows in (growth_rows, first_rows):
        reference = rows[0]
        for row in rows:
            row.ratio_min = row.min / reference.min if reference.min else None
            row.ratio_median = row.median / reference.median if reference.median else None
    tables = [
        Table(
            "Peak RSS growth of the parent during the map",
            f"row / the first row (lower is better); {usable_cores()} worker processes",
            growth_rows,
        ),
        Table(
            "Time from the map call to the first value",
            "row / the first row (lower is better)",
            first_rows,
        ),
    ]
    checks = [
        Check(
            "memory: nestpool's parent peak RSS growth <= 5 MB (worst median)",
            f"{worst_growth:.1f} MB",
            worst_growth <= 5,
        ),
        Check(
            "memory: nestpool's time to the first result <= 10 ms (worst median)",
            f"{worst_first:.1f} ms",
            worst_first <= 10,
        ),
    ]
    setup = (
        "each figure from a fresh interpreter; growth = kernel peak RSS (reset before the "
        "map) minus RSS before; a trivial function; values consumed and dropped"
    )
    return Result(NAME, TITLE, setup, tables, checks)


def _child_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("KIND", "COUNT"), required=True)
    parser.add_argument("--take", type=int, default=None)
    parser.add_argument("--chunksize", type=int, default=1)
    args = parser.parse_args()
    kind, count = args.child[0], int(args.child[1])
    print(json.dumps(child(kind, count, args.take, args.chunksize)), flush=True)


if __name__ == "__main__":
    _child_main()
