"""Run every example and check what it prints (CI runs this: ``.ci/run``).

- ``collate.py``: each "Process i Done, total=T" equals the sum of process i's
  five thread values, and "Main Done, total=T" equals the sum of the process
  totals (summed in the same order as the program, so the floats agree
  exactly); 25 thread lines, each value in [0, 1) as ``random()`` gives.
- ``nested.py``: each of the five process tasks reports its five thread
  workers (once each) before its "Done" line, and "Main Done" comes last.
- ``crawl.py``: every page was crawled and the three runs found the same
  pages, links and words; each run printed its throughput, and the speed-up
  over the single-process runs is printed.
- ``hash_tree.py``: every file was hashed and every digest matches ``hashlib``;
  both runs printed their throughput, and the speed-up over serial is printed.

Exits non-zero, saying what was wrong, if any check fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOAT = r"([-+0-9.e]+)"


class CheckError(Exception):
    """An example printed something other than what it should."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def check_collate(out: str) -> str:
    values: dict[int, dict[int, float]] = {}
    lines = re.findall(rf"^Process (\d+), thread worker (\d+), value={FLOAT}$", out, re.M)
    expect(len(lines) == 25, f"{len(lines)} thread value lines, not 25 (5 x 5, each once)")
    for p, t, v in lines:
        values.setdefault(int(p), {})[int(t)] = float(v)
        expect(0.0 <= float(v) < 1.0, f"process {p}, thread {t}: value={v} is not random()'s")
    totals = {
        int(p): float(v) for p, v in re.findall(rf"^Process (\d+) Done, total={FLOAT}$", out, re.M)
    }
    main = re.findall(rf"^Main Done, total={FLOAT}$", out, re.M)
    expect(sorted(values) == list(range(5)), f"thread values for processes {sorted(values)}")
    expect(sorted(totals) == list(range(5)), f"'Done' lines for processes {sorted(totals)}")
    for p, threads in values.items():
        expect(sorted(threads) == list(range(5)), f"process {p}: thread workers {sorted(threads)}")
        # The program sums in input order and prints repr(float), so the sums
        # agree exactly, digit for digit.
        expected = sum(threads[t] for t in range(5))
        expect(
            totals[p] == expected,
            f"process {p}: total={totals[p]} but its thread values sum to {expected}",
        )
    expect(len(main) == 1, "no single 'Main Done, total=' line")
    grand = sum(totals[p] for p in range(5))
    expect(
        float(main[0]) == grand,
        f"Main Done, total={main[0]} but the process totals sum to {grand}",
    )
    return f"5 process totals and the main total ({float(main[0]):.6f}) add up"


def check_nested(out: str) -> str:
    lines = out.splitlines()
    expect(lines and lines[-1] == "Main Done", "'Main Done' is not the last line")
    expect(len(lines) == 31, f"{len(lines)} lines, not 31 (25 thread lines, 5 'Done', 'Main Done')")
    for p in range(5):
        done = [i for i, line in enumerate(lines) if line == f"Process {p} Done"]
        expect(len(done) == 1, f"process {p}: {len(done)} 'Done' lines")
        workers = [
            i
            for i, line in enumerate(lines)
            if re.fullmatch(rf"Process {p}, thread worker \d", line)
        ]
        seen = sorted(int(lines[i][-1]) for i in workers)
        expect(seen == list(range(5)), f"process {p}: thread workers {seen}")
        expect(max(workers) < done[0], f"process {p}: 'Done' before its thread workers")
    return "5 process tasks x 5 thread subtasks, each reported before its 'Done'"


def check_crawl(out: str) -> str:
    crawled = re.search(r"^pages crawled: (\d+) of (\d+)$", out, re.M)
    expect(crawled is not None, "no 'pages crawled' line")
    assert crawled is not None
    expect(crawled[1] == crawled[2], f"crawled {crawled[1]} of {crawled[2]} pages")
    runs = re.findall(r"pages=(\d+) links=(\d+) words=(\d+) digest=(\w+)", out)
    expect(len(runs) == 3 and len(set(runs)) == 1, f"the runs disagree: {runs}")
    expect("results match the single-process runs: True" in out, "results differ from serial")
    # Each run's throughput, and the comparison with the single-process runs
    # (the figures themselves depend on the machine: not checked).
    speeds = re.findall(r"time=[0-9.]+s throughput=(\d+) pages/s$", out, re.M)
    expect(len(speeds) == 3, f"{len(speeds)} throughput lines, not 3")
    expect(
        re.search(
            r"^speed-up over serial: [0-9.]+x; over 1 process with threads: [0-9.]+x$", out, re.M
        )
        is not None,
        "no comparison with the single-process runs",
    )
    return f"{crawled[1]} pages, the same links, words and digest in all three runs"


def check_hash_tree(out: str) -> str:
    hashed = re.search(r"^files hashed: (\d+) of (\d+)$", out, re.M)
    expect(hashed is not None, "no 'files hashed' line")
    assert hashed is not None
    expect(hashed[1] == hashed[2], f"hashed {hashed[1]} of {hashed[2]} files")
    expect("digests match serial hashlib: True" in out, "digests differ from hashlib")
    speeds = re.findall(r"^(serial hashlib|nestpool) .*: [0-9.]+s throughput=\d+ MB/s$", out, re.M)
    expect(speeds == ["serial hashlib", "nestpool"], f"throughput lines: {speeds}")
    expect(
        re.search(r"^speed-up over serial: [0-9.]+x$", out, re.M) is not None,
        "no comparison with the serial run",
    )
    return f"{hashed[1]} files, every digest equal to hashlib's"


CHECKS: dict[str, Callable[[str], str]] = {
    "collate.py": check_collate,
    "nested.py": check_nested,
    "crawl.py": check_crawl,
    "hash_tree.py": check_hash_tree,
}


def main() -> int:
    failed = 0
    for name, check in CHECKS.items():
        print(f"--- examples/{name}", flush=True)
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(HERE / name)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        seconds = time.monotonic() - start
        shown = done.stdout.splitlines()
        for line in shown if len(shown) <= 12 else [*shown[:3], "...", *shown[-8:]]:
            print(f"    {line}")
        try:
            expect(done.returncode == 0, f"exit code {done.returncode}\n{done.stderr}")
            expect(done.stderr == "", f"printed on stderr:\n{done.stderr}")
            summary = check(done.stdout)
        except CheckError as exc:
            failed += 1
            print(f"FAIL examples/{name} ({seconds:.1f}s): {exc}", flush=True)
        else:
            print(f"ok   examples/{name} ({seconds:.1f}s): {summary}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
