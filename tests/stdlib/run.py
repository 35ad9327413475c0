"""Run CPython's process-pool tests against ``Pool``, per start method.

    python -m tests.stdlib.run                      # fork, forkserver, spawn
    python -m tests.stdlib.run -m spawn -v          # one start method, verbose
    python -m tests.stdlib.run -k test_cancel       # tests whose id contains it

Needs a Python whose ``test`` package has ``test_concurrent_futures`` as a
package (3.12+; CI uses 3.13). Each start method runs in a child process of
its own, the three at once (``--jobs``). ``faulthandler`` bounds every test
(``--timeout``, default 60 s): a test that hangs has its stacks dumped and
counts as hung, and its child is started again for the tests that remain.

Prints the counts per start method, and exits 1 if a test failed, errored or
hung unless ``adapter.EXPECTED_FAILURES`` lists it and it failed the way
listed there, if a listed test passed, or if a listed name matched no test.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from nestpool._exit import open_pools

from . import adapter

if TYPE_CHECKING:
    from _typeshed import OptExcInfo as ErrInfo

#: outcomes that fail the run
UNEXPECTED = ("failed", "errored", "hung", "xpassed")
#: "skipped": listed in adapter.SKIPS; "self-skip": the test skipped itself
#: (Windows only, not for fork...)
COLUMNS = ("passed", "failed", "errored", "hung", "skipped", "self-skip", "xfailed", "xpassed")


# ---------------------------------------------------------------- child side


class _Recorder(unittest.TextTestResult):
    """Writes one JSON line per test outcome, and bounds each test."""

    def __init__(self, stream: Any, descriptions: bool, verbosity: int) -> None:
        super().__init__(stream, descriptions, verbosity)
        self.out: TextIO = sys.stdout
        self.limit = 60.0
        self.expected: dict[str, adapter.Expected] = {}
        self.listed_skips: set[str] = set()
        self._outcome = "passed"
        self._detail = ""
        self._began = 0.0

    def write(self, **record: Any) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def _set(self, outcome: str, detail: str) -> None:
        rank = ("passed", "self-skip", "skipped", "xfailed", "xpassed", "failed", "errored")
        if rank.index(outcome) >= rank.index(self._outcome):
            self._outcome, self._detail = outcome, detail

    def startTest(self, test: unittest.TestCase) -> None:
        self._outcome, self._detail, self._began = "passed", "", time.monotonic()
        expected = self.expected.get(test.id())
        hangs = expected is not None and expected.match == adapter.HANGS
        self.write(event="start", id=test.id(), hang_expected=hangs)
        # exit=True: a hang dumps every thread's stack and ends this child;
        # the parent records the test and starts a child for the rest.
        faulthandler.dump_traceback_later(adapter.HANG_SECONDS if hangs else self.limit, exit=True)
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        self.write(
            event="end",
            id=test.id(),
            outcome=self._outcome,
            seconds=round(time.monotonic() - self._began, 2),
            detail=self._detail,
            left_open=_close_leftover_pools(),
        )
        # Still armed between tests: module teardown must not hang either.
        faulthandler.dump_traceback_later(self.limit, exit=True)

    def addFailure(self, test: unittest.TestCase, err: ErrInfo) -> None:
        super().addFailure(test, err)
        self._set("failed", _text(err))

    def addError(self, test: unittest.TestCase, err: ErrInfo) -> None:
        super().addError(test, err)
        text = _text(err)
        if not isinstance(test, unittest.TestCase):
            # setUpModule, a module cleanup...: not inside a test
            self.write(event="end", id=str(test), outcome="errored", seconds=0, detail=text)
            return
        self._set("errored", text)

    def addSubTest(
        self, test: unittest.TestCase, subtest: unittest.TestCase, err: ErrInfo | None
    ) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None and err[0] is not None:
            failed = issubclass(err[0], test.failureException)
            self._set("failed" if failed else "errored", _text(err))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._set("skipped" if test.id() in self.listed_skips else "self-skip", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: ErrInfo) -> None:
        super().addExpectedFailure(test, err)
        text = _text(err)
        expected = self.expected[test.id()]
        if expected.match != adapter.HANGS and re.search(expected.match, text):
            self._set("xfailed", expected.reason)
        else:
            # Listed, but it failed another way: what changed must be looked at.
            self._set("failed", f"listed as failing with {expected.match!r}, but:\n{text}")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._set("xpassed", "passed, but EXPECTED_FAILURES lists it: remove it from the list")


def _text(err: ErrInfo) -> str:
    return "".join(traceback.format_exception(*err))


def _close_leftover_pools() -> int:
    """Terminate the pools a test left open; return how many.

    A failing test can stop before its own ``shutdown`` (``_check_crash`` in
    test_deadlock, say). Its workers would then hold the resource tracker's
    pipe open, and the module cleanup (``multiprocessing.util._cleanup_tests``)
    waits for the tracker to exit: the child would hang after the last test.
    """
    left = list(open_pools)
    for pool in left:
        pool.terminate()
    return len(left)


def _child(args: argparse.Namespace) -> int:
    with open(args.exclude, encoding="utf-8") as f:
        exclude = set(json.load(f))
    selection = adapter.Selection(args.child, adapter.install(adapter.executor_type()))
    tests = unittest.TestSuite(
        t for t in _flatten(selection.suite) if t.id() not in exclude and args.k in t.id()
    )
    with open(args.results, "a", encoding="utf-8") as out:

        def make_result(stream: Any, descriptions: bool, verbosity: int) -> _Recorder:
            result = _Recorder(stream, descriptions, verbosity)
            result.out, result.limit = out, args.timeout
            result.expected, result.listed_skips = selection.expected, selection.skipped
            return result

        out.write(json.dumps({"event": "keys", "used": sorted(selection.used)}) + "\n")
        runner = unittest.TextTestRunner(
            stream=sys.stderr, verbosity=2 if args.verbose else 1, resultclass=make_result
        )
        runner.run(tests)
        faulthandler.cancel_dump_traceback_later()
    return 0


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    tests: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            tests.extend(_flatten(item))
        else:
            tests.append(item)
    return tests


# ---------------------------------------------------------------- parent side


@dataclass
class Report:
    start_method: str
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    seconds: float = 0.0
    log: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.outcomes.values() if r["outcome"] == outcome)

    def unexpected(self) -> list[dict[str, Any]]:
        return [r for r in self.outcomes.values() if r["outcome"] in UNEXPECTED]


def _run_start_method(start_method: str, args: argparse.Namespace, tmp: str) -> Report:
    report = Report(start_method)
    began = time.monotonic()
    results = os.path.join(tmp, f"{start_method}.jsonl")
    excluded = os.path.join(tmp, f"{start_method}-exclude.json")
    log_path = os.path.join(tmp, f"{start_method}.log")
    while True:
        with open(excluded, "w", encoding="utf-8") as f:
            json.dump(sorted(report.outcomes), f)
        command = [
            *(sys.executable, "-X", "faulthandler", "-m", "tests.stdlib.run"),
            *("--child", start_method, "--results", results, "--exclude", excluded),
            *("--timeout", str(args.timeout), "-k", args.k),
            *(["-v"] if args.verbose else []),
        ]
        with open(log_path, "a", encoding="utf-8") as log:
            returncode = subprocess.call(
                command, cwd=adapter.ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        started: dict[str, bool] = {}
        with open(results, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record["event"] == "keys":
                    report.used.update(record["used"])
                elif record["event"] == "start":
                    started[record["id"]] = record["hang_expected"]
                else:
                    report.outcomes[record["id"]] = record
        hung = [test_id for test_id in started if test_id not in report.outcomes]
        for test_id in hung:
            expected = started[test_id]
            report.outcomes[test_id] = {
                "id": test_id,
                "outcome": "xfailed" if expected else "hung",
                "seconds": adapter.HANG_SECONDS if expected else args.timeout,
                "detail": "hung, as listed" if expected else "hung (stacks in the log)",
            }
        if returncode == 0:
            break
        if not hung:
            name = f"test process for {start_method}"
            report.outcomes[name] = {
                "id": name,
                "outcome": "errored",
                "seconds": 0,
                "detail": f"it exited with {returncode} outside any test (see the log)",
            }
            break
    with open(log_path, encoding="utf-8") as log:
        report.log = log.read()
    report.seconds = time.monotonic() - began
    return report


def _print_report(reports: list[Report], stale: list[str], total: float) -> None:
    executor = adapter.executor_type().__qualname__
    print(f"CPython {sys.version.split()[0]} test.test_concurrent_futures against {executor}")
    print(f"{'start method':<13}{'run':>5}" + "".join(f"{c:>10}" for c in COLUMNS) + "  seconds")
    for r in reports:
        counts = "".join(f"{r.count(c):>10}" for c in COLUMNS)
        print(f"{r.start_method:<13}{len(r.outcomes):>5}{counts}{r.seconds:>9.1f}")
    print(f"total {total:.1f}s")
    for r in reports:
        for record in r.unexpected():
            print(f"\n{record['outcome'].upper()} [{r.start_method}] {record['id']}")
            print(record["detail"].rstrip())
    for key in stale:
        print(f"\nSTALE: {key!r} is listed in adapter.py but matched no test")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-m", "--start-method", action="append", choices=adapter.START_METHODS)
    parser.add_argument("-k", default="", help="only tests whose id contains this")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every test's log")
    parser.add_argument("-j", "--jobs", type=int, default=3, help="start methods run at once")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per test")
    parser.add_argument("--child", choices=adapter.START_METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--exclude", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    methods = args.start_method or list(adapter.START_METHODS)
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="nestpool-stdlib-") as tmp,
        ThreadPoolExecutor(max(1, args.jobs)) as executor,
    ):
        reports = list(executor.map(lambda m: _run_start_method(m, args, tmp), methods))
    stale: list[str] = []
    if not args.k and len(methods) == len(adapter.START_METHODS):
        used = set().union(*(r.used for r in reports))
        stale = sorted((set(adapter.SKIPS) | set(adapter.EXPECTED_FAILURES)) - used)
    for r in reports:
        if args.verbose or r.unexpected():
            print(f"=================== {r.start_method}: the tests' output")
            print(r.log.rstrip())
    _print_report(reports, stale, time.monotonic() - began)
    return 1 if stale or any(r.unexpected() for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
