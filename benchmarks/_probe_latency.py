"""Round-trip latency of one tiny process task: nestpool vs ProcessPoolExecutor.

One worker process each, both warm, both started with forkserver, measured in
the same run and interleaved in rounds (so drift hits both alike); prints the
median of many ``submit(...).result()`` round trips and the ratio.

    python benchmarks/_probe_latency.py [--calls 3000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import multiprocessing
import operator
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

from nestpool import Pool, process_task


@process_task
def tiny(x: int) -> int:
    """A decorated task defined in __main__ (so it travels by value)."""
    return x + 1


def _samples(call: Callable[[], Future[object]], calls: int) -> list[float]:
    clock = time.perf_counter
    out = []
    for _ in range(calls):
        start = clock()
        call().result()
        out.append(clock() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    per_round = max(1, args.calls // args.rounds)
    context = multiprocessing.get_context("forkserver")
    results: dict[str, list[float]] = {
        "ProcessPoolExecutor.submit(operator.mul)": [],
        "nestpool Pool.submit(operator.mul)": [],
        "nestpool decorated call (by value)": [],
    }
    with (
        ProcessPoolExecutor(max_workers=1, mp_context=context) as ppe,
        Pool(processes=1, threads=1, start_method="forkserver") as pool,
    ):
        calls: dict[str, Callable[[], Future[object]]] = {
            "ProcessPoolExecutor.submit(operator.mul)": lambda: ppe.submit(operator.mul, 2, 3),
            "nestpool Pool.submit(operator.mul)": lambda: pool.submit(operator.mul, 2, 3),
            "nestpool decorated call (by value)": lambda: tiny(1),
        }
        for call in calls.values():  # warm up: workers started, code loaded
            _samples(call, 200)
        for _ in range(args.rounds):
            for name, call in calls.items():
                results[name].extend(_samples(call, per_round))
    baseline = statistics.median(results["ProcessPoolExecutor.submit(operator.mul)"])
    for name, samples in results.items():
        median = statistics.median(samples)
        print(
            f"{name:44s} median {median * 1e6:7.1f} us  "
            f"ratio {median / baseline:4.2f}  ({len(samples)} calls)"
        )


if __name__ == "__main__":
    main()
