"""Workload 5, subtask hop: the cost of one trivial subtask inside a worker.

One process task runs, in its worker, N trivial subtasks three ways: (a) each
called and waited on at once, (b) all submitted, then collected, (c) through
``.map``; and the same with a ``ThreadPoolExecutor`` of the same size in the
same process: ``submit().result()`` one by one, submit-all, ``map``. Figures
are microseconds per subtask; the ratio is the ThreadPoolExecutor's time /
nestpool's (above 1: nestpool is faster).

In (a), the waiting thread finds its subtask not started yet and runs it
itself (that is also what makes waiting deadlock-free), so no thread hop
is paid.
"""

from __future__ import annotations

from benchmarks import tasks
from benchmarks._harness import Check, Result, Row, Size, Table
from nestpool import Pool

NAME = "hop"
TITLE = "Subtask hop: trivial subtasks inside one worker"

PAIRS = [
    ("nestpool: call and wait", "ThreadPoolExecutor: submit().result() one by one"),
    ("nestpool: submit all, then collect", "ThreadPoolExecutor: submit all, then collect"),
    ("nestpool: .map", "ThreadPoolExecutor: .map"),
]


def run(size: Size, start_method: str = "forkserver") -> Result:
    count = size.pick(1000, 10_000, 10_000)
    threads = 8
    repeats = max(size.repeats, 5) if not size.smoke else 1
    with Pool(1, threads, start_method=start_method):
        tasks.np_hop(100, threads).result()
        samples = [tasks.np_hop(count, threads).result() for _ in range(repeats)]
    rows: dict[str, Row] = {
        label: Row(label, [s[label] for s in samples], unit="us") for label in samples[0]
    }
    ordered: list[Row] = []
    for ours, theirs in PAIRS:
        mine, base = rows[ours], rows[theirs]
        mine.ratio_min = base.min / mine.min
        mine.ratio_median = base.median / mine.median
        ordered += [mine, base]
    a, b, c = (rows[ours] for ours, _ in PAIRS)
    assert b.ratio_min is not None and c.ratio_min is not None
    assert b.ratio_median is not None and c.ratio_median is not None
    checks = [
        Check(
            "hop (a): call and wait <= 5 us per subtask",
            f"{a.min:.1f} us (min), {a.median:.1f} us (median)",
            a.min <= 5,
        ),
        Check(
            "hop (b): submit all no slower than ThreadPoolExecutor",
            f"{b.ratio_min:.2f}x (min), {b.ratio_median:.2f}x (median)",
            b.ratio_min >= 1.0,
        ),
        Check(
            "hop (c): .map no slower than ThreadPoolExecutor",
            f"{c.ratio_min:.2f}x (min), {c.ratio_median:.2f}x (median)",
            c.ratio_min >= 1.0,
        ),
    ]
    table = Table(
        f"{count:,} trivial subtasks in one worker, {threads} threads, {repeats} repeats",
        "ThreadPoolExecutor's time / nestpool's on the row pair (above 1: nestpool is faster)",
        ordered,
    )
    setup = (
        f"Pool(processes=1, threads={threads}); the ThreadPoolExecutor has {threads} threads too"
    )
    return Result(NAME, TITLE, setup, [table], checks)
