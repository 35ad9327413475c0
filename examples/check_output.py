"""Run every example and check what it prints (CI runs this: ``.ci/run``).

- ``collate.py``: each "Process i Done, total=T" equals the sum of process i's
  five thread values, and "Main Done, total=T" equals the sum of the process
  totals (summed in the same order as the program, so the floats agree
  exactly); 25 thread lines, each value in [0, 1) as ``random()`` gives. The
  random values are the worker processes' own: no value printed for one
  process task is printed for another (a function sent to the workers with a
  copy of the parent's ``random`` state would make every worker print the
  same sequence).
- ``nested.py``: each of the five process tasks reports its five thread
  workers (once each) before its "Done" line, and "Main Done" comes last. It
  prints no random values, so the check records them: each run gets a
  ``sitecustomize`` module (on ``PYTHONPATH``, written to a temporary
  directory) that wraps ``time.sleep`` and appends, for every sleep made by a
  function named ``thread_work``, the pid, its ``process_id`` and
  ``thread_id`` and the seconds to a file. As for ``collate.py``, no two
  process tasks may have drawn the same value.
- ``crawl.py``: every page was crawled and the three runs found the same
  pages, links and words; each run printed its throughput, and the speed-up
  over the single-process runs is printed.
- ``async_crawl.py``: the crawl of ``crawl.py`` with async subtasks finds the
  same pages, links and words as with thread subtasks; both runs printed
  their throughput, and the comparison is printed.
- ``hash_tree.py``: every file was hashed and every digest matches ``hashlib``;
  both runs printed their throughput, and the speed-up over serial is printed.

Exits non-zero, saying what was wrong, if any check fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
FLOAT = r"([-+0-9.e]+)"

#: Loaded by every Python process of a run (the program, its forkserver, its
#: workers) from PYTHONPATH: records the sleeps of ``thread_work``.
SITECUSTOMIZE = """\
import os
import sys
import time

_record = os.environ.get("NESTPOOL_CHECK_SLEEPS")
_sleep = time.sleep


def sleep(seconds):
    caller = sys._getframe(1)
    if _record and caller.f_code.co_name == "thread_work":
        args = caller.f_locals
        line = f"{os.getpid()} {args['process_id']} {args['thread_id']} {seconds!r}\\n"
        fd = os.open(_record, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())  # one write: lines never mix
        finally:
            os.close(fd)
    _sleep(seconds)


time.sleep = sleep
"""


class Sleep(NamedTuple):
    """One ``sleep`` made by an example's ``thread_work``."""

    pid: int
    process_id: int
    thread_id: int
    seconds: float


class Run(NamedTuple):
    """What one run of an example printed, and the sleeps it made."""

    out: str
    sleeps: list[Sleep]


class CheckError(Exception):
    """An example printed something other than what it should."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def expect_own_random_values(values: dict[int, list[float]], sleeps: list[Sleep]) -> str:
    """No value of ``values`` (``{process task: its random values}``) belongs
    to two process tasks: each worker process draws its own random numbers.
    ``sleeps`` tell which worker process ran each task."""
    pids = {s.process_id: s.pid for s in sleeps}
    owner: dict[float, int] = {}
    for p in sorted(values):
        for value in values[p]:
            q = owner.setdefault(value, p)
            if q != p:
                same = sorted(set(values[p]) & set(values[q]))
                raise CheckError(
                    f"process tasks {q} (pid {pids.get(q)}) and {p} (pid {pids.get(p)}) "
                    f"drew the same random values {same}: the worker processes share one "
                    "random state (most likely the functions reached them by value, with a "
                    "copy of the parent's random module)"
                )
    workers = len(set(pids.values()))
    return f"{len(owner)} random values in {workers} worker processes, none drawn twice"


def expect_sleeps(sleeps: list[Sleep]) -> dict[int, list[float]]:
    """The 25 sleeps of ``thread_work`` (5 process tasks x 5 threads, once
    each); returns each process task's sleeps, in seconds."""
    calls = sorted((s.process_id, s.thread_id) for s in sleeps)
    expect(
        calls == [(p, t) for p in range(5) for t in range(5)],
        f"sleeps of thread_work (process task, thread): {calls}, not 5 x 5 once each",
    )
    pids = {p: {s.pid for s in sleeps if s.process_id == p} for p in range(5)}
    expect(all(len(v) == 1 for v in pids.values()), f"pids of each process task: {pids}")
    values: dict[int, list[float]] = {}
    for s in sleeps:
        values.setdefault(s.process_id, []).append(s.seconds)
    return values


def check_collate(run: Run) -> str:
    out = run.out
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
    own = expect_own_random_values(
        {p: list(threads.values()) for p, threads in values.items()}, run.sleeps
    )
    return f"5 process totals and the main total ({float(main[0]):.6f}) add up; {own}"


def check_nested(run: Run) -> str:
    lines = run.out.splitlines()
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
    own = expect_own_random_values(expect_sleeps(run.sleeps), run.sleeps)
    return f"5 process tasks x 5 thread subtasks, each reported before its 'Done'; {own}"


def _crawled_pages(out: str, runs_expected: int) -> str:
    """The crawl's page count, checked: every page crawled, every run agreeing."""
    crawled = re.search(r"^pages crawled: (\d+) of (\d+)$", out, re.M)
    expect(crawled is not None, "no 'pages crawled' line")
    assert crawled is not None
    expect(crawled[1] == crawled[2], f"crawled {crawled[1]} of {crawled[2]} pages")
    runs = re.findall(r"pages=(\d+) links=(\d+) words=(\d+) digest=(\w+)", out)
    expect(len(runs) == runs_expected and len(set(runs)) == 1, f"the runs disagree: {runs}")
    speeds = re.findall(r"time=[0-9.]+s throughput=(\d+) pages/s$", out, re.M)
    expect(len(speeds) == runs_expected, f"{len(speeds)} throughput lines, not {runs_expected}")
    return crawled[1]


def check_crawl(run: Run) -> str:
    out = run.out
    pages = _crawled_pages(out, 3)
    expect("results match the single-process runs: True" in out, "results differ from serial")
    # The comparison with the single-process runs (the figures themselves
    # depend on the machine: not checked).
    expect(
        re.search(
            r"^speed-up over serial: [0-9.]+x; over 1 process with threads: [0-9.]+x$", out, re.M
        )
        is not None,
        "no comparison with the single-process runs",
    )
    return f"{pages} pages, the same links, words and digest in all three runs"


def check_async_crawl(run: Run) -> str:
    out = run.out
    pages = _crawled_pages(out, 2)
    expect("results match the thread-subtask run: True" in out, "results differ")
    expect(
        re.search(r"^async subtasks against thread subtasks: [0-9.]+x$", out, re.M) is not None,
        "no comparison with the thread-subtask run",
    )
    return f"{pages} pages, the same with async subtasks as with thread subtasks"


def check_hash_tree(run: Run) -> str:
    out = run.out
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


CHECKS: dict[str, Callable[[Run], str]] = {
    "collate.py": check_collate,
    "nested.py": check_nested,
    "crawl.py": check_crawl,
    "async_crawl.py": check_async_crawl,
    "hash_tree.py": check_hash_tree,
}


def run_example(name: str, scratch: Path) -> tuple[subprocess.CompletedProcess[str], Run]:
    """Run ``examples/name`` with the sleep-recording ``sitecustomize``."""
    (scratch / "sitecustomize.py").write_text(SITECUSTOMIZE)
    record = scratch / f"{name}.sleeps"
    path = os.pathsep.join(filter(None, [str(scratch), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(HERE / name)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": path, "NESTPOOL_CHECK_SLEEPS": str(record)},
    )
    sleeps = []
    if record.exists():
        for line in record.read_text().splitlines():
            pid, process_id, thread_id, seconds = line.split()
            sleeps.append(Sleep(int(pid), int(process_id), int(thread_id), float(seconds)))
    return done, Run(done.stdout, sleeps)


def main() -> int:
    failed = 0
    for name, check in CHECKS.items():
        print(f"--- examples/{name}", flush=True)
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="nestpool-check-") as scratch:
            done, run = run_example(name, Path(scratch))
        seconds = time.monotonic() - start
        shown = done.stdout.splitlines()
        for line in shown if len(shown) <= 12 else [*shown[:3], "...", *shown[-8:]]:
            print(f"    {line}")
        try:
            expect(done.returncode == 0, f"exit code {done.returncode}\n{done.stderr}")
            expect(done.stderr == "", f"printed on stderr:\n{done.stderr}")
            summary = check(run)
        except CheckError as exc:
            failed += 1
            print(f"FAIL examples/{name} ({seconds:.1f}s): {exc}", flush=True)
        else:
            print(f"ok   examples/{name} ({seconds:.1f}s): {summary}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
