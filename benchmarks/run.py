"""Run nestpool's benchmark suite: every workload, its baselines, ratios.

    python benchmarks/run.py              # everything, full size (~10-15 min on 2 cores)
    python benchmarks/run.py --quick      # everything, smaller (~2 min)
    python benchmarks/run.py --smoke      # tiny sizes, seconds: "does it still run?"
    python benchmarks/run.py --only tiny  # one workload (repeat --only for more)
    python -m benchmarks --quick          # the same

Needs the ``bench`` extra: ``pip install -e '.[bench]'`` (loky, mpire, joblib,
psutil, aiomultiprocess, aiohttp). Every figure is a ratio of two times measured in this run (each
baseline's time / nestpool's, or nestpool's / a computed ideal), shown as the
ratio of the minima and of the medians of the repeats. Results are printed as
markdown tables and saved as JSON under benchmarks/results/ (not committed);
``--markdown FILE`` also writes the tables to FILE, which is how
docs/performance.md's tables are made (``--json`` of a committed run).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # `python benchmarks/run.py` puts benchmarks/ first on the path, not the
    # repository: the workers (spawned by nestpool, loky, mpire, joblib) must
    # import `benchmarks.tasks` too, so they get it through PYTHONPATH.
    sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

from benchmarks._harness import Result, Size, fmt_ratio, fmt_value  # noqa: E402

#: every workload, in the order they run
WORKLOADS = ["hierarchy", "crawl", "tiny", "memory", "hop", "latency"]


def machine() -> dict[str, Any]:
    """The machine and versions the figures were taken on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cores": len(os.sched_getaffinity(0)),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            ]
        info["cpu"] = f"{len(models)} x {models[0]}" if models else "?"
    except OSError:
        info["cpu"] = platform.processor() or "?"
    try:
        with open("/proc/meminfo") as meminfo:
            total_kb = int(meminfo.readline().split()[1])
        info["ram_gb"] = round(total_kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    versions = {}
    for package in (
        "nestpool",
        "loky",
        "mpire",
        "joblib",
        "psutil",
        "cloudpickle",
        "wrapt",
        "aiomultiprocess",
        "aiohttp",
    ):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "not installed"
    info["versions"] = versions
    return info


def markdown(result: Result) -> str:
    """One workload's tables as markdown."""
    lines = [f"### {result.title}", "", result.setup, ""]
    for table in result.tables:
        lines += [f"**{table.title}**", ""]
        lines += [
            "| engine | min | median | ratio (min) | ratio (median) |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in table.rows:
            label = row.label + (f" ({row.note})" if row.note else "")
            lines.append(
                f"| {label} | {fmt_value(row.min, row.unit)} | {fmt_value(row.median, row.unit)} "
                f"| {fmt_ratio(row.ratio_min)} | {fmt_ratio(row.ratio_median)} |"
            )
        lines += ["", f"Ratio: {table.ratio}.", ""]
        lines += [f"- {note}" for note in table.notes]
        if table.notes:
            lines.append("")
    if result.checks:
        lines += ["| target | this run | met |", "|---|---|---|"]
        lines += [
            f"| {c.target} | {c.figure} | {'yes' if c.met else '**no**'} |" for c in result.checks
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="nestpool's benchmark suite: ratios to baselines measured in the same run.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smaller sizes: about 2 minutes")
    group.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    parser.add_argument(
        "--only",
        action="append",
        choices=WORKLOADS,
        metavar="NAME",
        help=f"run only this workload (repeatable): {', '.join(WORKLOADS)}",
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure (>= 3)")
    parser.add_argument("--json", type=Path, default=None, help="where to save the JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    parser.add_argument(
        "--start-method",
        default="forkserver",
        choices=["fork", "forkserver", "spawn"],
        help="start method of nestpool and the standard library's pools (default forkserver)",
    )
    args = parser.parse_args(argv)

    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    repeats = args.repeats or (1 if args.smoke else 3)
    size = Size(name, repeats)
    selected = args.only or WORKLOADS
    info = machine()
    print(
        f"# nestpool benchmarks ({name}, {repeats} repeats)\n\n"
        f"Python {info['python']} on {info['cpu']}, {info['cores']} usable cores, "
        f"{info.get('ram_gb', '?')} GB RAM; load average at start {info.get('load_average')}\n"
        f"versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}\n",
        flush=True,
    )
    started = time.perf_counter()
    results: list[Result] = []
    failures: list[str] = []
    for workload in selected:
        module = importlib.import_module(f"benchmarks.{workload}")
        print(f"... {workload}: {module.TITLE}", flush=True)
        workload_started = time.perf_counter()
        try:
            result: Result = module.run(size, start_method=args.start_method)
        except Exception:
            traceback.print_exc()
            failures.append(workload)
            continue
        result.extra["seconds"] = round(time.perf_counter() - workload_started, 1)
        results.append(result)
        print("\n" + markdown(result), flush=True)
        print(f"({workload} took {result.extra['seconds']:.0f} s)\n", flush=True)

    checks = [c for r in results for c in r.checks]
    if checks:
        print("## Targets\n\n| target | this run | met |\n|---|---|---|")
        for c in checks:
            print(f"| {c.target} | {c.figure} | {'yes' if c.met else '**no**'} |")
        print()
    elapsed = time.perf_counter() - started
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"total {elapsed:.0f} s; load average at end {info['load_average_end']}")

    document = {
        "size": name,
        "repeats": repeats,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(elapsed, 1),
        "machine": info,
        "results": [dataclasses.asdict(r) for r in results],
        "failed": failures,
    }
    path = args.json
    if path is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = ROOT / "benchmarks" / "results" / f"{stamp}-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"saved {path}")
    if args.markdown is not None:
        args.markdown.write_text("\n".join(markdown(r) for r in results))
        print(f"wrote {args.markdown}")
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
