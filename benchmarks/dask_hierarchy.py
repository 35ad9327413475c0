"""The price of the Dask path on one machine: the hierarchy workload on
nestpool's local engine and on a two-worker ``distributed.LocalCluster``.

Workload: ``--tasks`` process tasks; each fans out ``--subtasks`` thread
subtasks that wait ``--io-ms`` (IO) and then spends ``--cpu-ms`` of pure-Python
CPU on their results. Both runs use the same shape: 2 worker processes, 2
process tasks at once per process, ``--threads`` subtask threads per process:

- local: ``Pool(processes=2, tasks_per_process=2, threads=T)``
- dask:  ``LocalCluster(n_workers=2, threads_per_worker=2)`` + ``Pool(client=..., threads=T)``

Start-up (processes, cluster) is excluded: each engine runs the workload once
to warm up, then ``--repeat`` times; the median wall time is reported, and the
ratio dask/local (above 1: the Dask path is slower by that factor). A second
figure is the cost of one empty process task through ``.map`` (the local
engine batches them; Dask sends one task each).

    python benchmarks/dask_hierarchy.py            # needs nestpool[dask]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from nestpool import Pool, process_task, thread_subtask


@thread_subtask
def io_wait(seconds: float, value: int) -> int:
    """An IO wait (a network call, a disk read)."""
    time.sleep(seconds)
    return value


def burn(seconds: float) -> int:
    """Pure-Python CPU work for about ``seconds``."""
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        for i in range(1000):
            total += i * i
    return total


@process_task
def unit(index: int, subtasks: int, io_seconds: float, cpu_seconds: float) -> int:
    """One CPU-heavy unit that fans out into IO waits."""
    values = list(io_wait.map([io_seconds] * subtasks, range(subtasks)))
    burn(cpu_seconds)
    return index + sum(values)


@process_task
def tiny(x: int) -> int:
    """A process task with no work: its cost is all dispatch."""
    return x


def tiny_workload(count: int) -> float:
    started = time.perf_counter()
    assert sum(tiny.map(range(count))) == count * (count - 1) // 2
    return time.perf_counter() - started


def workload(args: argparse.Namespace) -> float:
    started = time.perf_counter()
    results = list(
        unit.map(
            range(args.tasks),
            [args.subtasks] * args.tasks,
            [args.io_ms / 1000] * args.tasks,
            [args.cpu_ms / 1000] * args.tasks,
        )
    )
    elapsed = time.perf_counter() - started
    expected = [i + args.subtasks * (args.subtasks - 1) // 2 for i in range(args.tasks)]
    assert results == expected, "wrong results"
    return elapsed


def measure(label: str, make_pool: Callable[[], Pool], args: argparse.Namespace) -> float:
    with make_pool():
        workload(args)  # warm-up: start the workers, their thread pools, imports
        times = [workload(args) for _ in range(args.repeat)]
        per_tiny = min(tiny_workload(args.tiny) for _ in range(2)) / args.tiny
    median = statistics.median(times)
    print(
        f"{label:>6}: median {median * 1000:7.1f} ms   "
        f"min {min(times) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms   "
        f"(a tiny task via .map: {per_tiny * 1e6:.0f} us)",
        flush=True,
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--subtasks", type=int, default=50)
    parser.add_argument("--io-ms", type=float, default=20.0)
    parser.add_argument("--cpu-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiny", type=int, default=500, help="tiny tasks for the dispatch cost")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    print(
        f"hierarchy: {args.tasks} process tasks x {args.subtasks} subtasks of "
        f"{args.io_ms:g} ms IO + {args.cpu_ms:g} ms CPU; 2 processes x 2 tasks, "
        f"{args.threads} threads per process",
        flush=True,
    )
    local = measure(
        "local",
        lambda: Pool(processes=2, tasks_per_process=2, threads=args.threads),
        args,
    )
    cluster_started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        startup = time.perf_counter() - cluster_started
        print(f"(LocalCluster start-up: {startup * 1000:.0f} ms, not counted)", flush=True)
        options: dict[str, Any] = {"client": client, "threads": args.threads}
        dask = measure("dask", lambda: Pool(**options), args)
    print(f"ratio dask/local: {dask / local:.2f}", flush=True)


if __name__ == "__main__":
    main()
