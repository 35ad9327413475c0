"""Workload 6, dispatch latency and recovery.

Latency: the round trip of one tiny process task, called and waited on, one
at a time (``task(x).result()``), against ``ProcessPoolExecutor``'s
``submit(fn, x).result()``; microseconds per call (median of many calls).

Recovery: a worker is killed with SIGKILL; the time from the kill to the
first result of a task that only its replacement can run
(``processes=1``), under forkserver and spawn. ``ProcessPoolExecutor`` has no
recovery (one death breaks the pool): its figure is the time from the kill
until a *new* executor, which the program must build itself, returns a
result.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from benchmarks import tasks
from benchmarks._harness import Check, Result, Row, Size, Table
from nestpool import Pool

NAME = "latency"
TITLE = "Dispatch latency of one process task, and recovery from a worker's death"


def _round_trips(call: object, count: int) -> float:
    """Median microseconds of ``call()`` over ``count`` calls."""
    assert callable(call)
    for _ in range(50):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def nestpool_recovery(start_method: str) -> float:
    with Pool(1, start_method=start_method):
        pid = tasks.np_pid().result()
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        new_pid = tasks.np_pid().result(timeout=60)
        elapsed = time.perf_counter() - started
    if new_pid == pid:
        raise AssertionError("the killed worker answered")
    return elapsed * 1000


def stdlib_recovery(start_method: str) -> float:
    context = multiprocessing.get_context(start_method)
    executor = ProcessPoolExecutor(1, mp_context=context)
    pid = executor.submit(tasks.worker_pid).result()
    started = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    try:
        while True:  # what a program can do: notice the broken pool...
            executor.submit(tasks.worker_pid).result(timeout=60)
    except BrokenProcessPool:
        pass
    executor.shutdown(wait=True)
    with ProcessPoolExecutor(1, mp_context=context) as fresh:  # ...and build another
        fresh.submit(tasks.worker_pid).result(timeout=60)
        elapsed = time.perf_counter() - started
    return elapsed * 1000


def run(size: Size, start_method: str = "forkserver") -> Result:
    calls = size.pick(200, 2000, 5000)
    repeats = size.repeats
    context = multiprocessing.get_context(start_method)
    nestpool_us: list[float] = []
    stdlib_us: list[float] = []
    for _ in range(repeats):
        with Pool(2, start_method=start_method):
            nestpool_us.append(_round_trips(lambda: tasks.np_identity(1).result(), calls))
        with ProcessPoolExecutor(2, mp_context=context) as executor:
            stdlib_us.append(
                _round_trips(lambda: executor.submit(tasks.identity, 1).result(), calls)
            )
    ours = Row("nestpool: task(x).result()", nestpool_us, unit="us")
    theirs = Row("ProcessPoolExecutor: submit(fn, x).result()", stdlib_us, unit="us")
    ours.ratio_min = theirs.min / ours.min
    ours.ratio_median = theirs.median / ours.median
    latency = Table(
        f"round trip of one tiny process task, median of {calls:,} calls, {repeats} repeats",
        "ProcessPoolExecutor's time / nestpool's (above 1: nestpool is faster)",
        [ours, theirs],
    )
    recovery_rows: list[Row] = []
    methods = ["forkserver", "spawn"]
    for method in methods:
        mine = Row(
            f"nestpool, {method}: kill -> replacement's first result",
            [nestpool_recovery(method) for _ in range(repeats)],
            unit="ms",
        )
        base = Row(
            f"ProcessPoolExecutor, {method}: kill -> broken -> new executor's first result",
            [stdlib_recovery(method) for _ in range(repeats)],
            unit="ms",
        )
        mine.ratio_min = base.min / mine.min
        mine.ratio_median = base.median / mine.median
        recovery_rows += [mine, base]
    recovery = Table(
        "recovery from a worker's SIGKILL (processes=1)",
        "the standard library's time / nestpool's (above 1: nestpool is faster)",
        recovery_rows,
    )
    assert ours.ratio_min is not None and ours.ratio_median is not None
    checks = [
        Check(
            "latency: one process task's round trip vs ProcessPoolExecutor (reported, no target)",
            f"{ours.ratio_min:.2f}x (min), {ours.ratio_median:.2f}x (median)",
            True,
        )
    ]
    setup = f"Pool(processes=2) and ProcessPoolExecutor(2), start method {start_method}"
    return Result(NAME, TITLE, setup, [latency, recovery], checks)
