"""Smoke test of nestpool as installed from its wheel (run by scripts/package.sh).

    venv/bin/python smoke_installed.py     # from a directory without the source tree

Checks that the package imported is the installed one (not a source tree on
the path), that it ships ``py.typed`` and no tests or benchmarks, that its
version is the metadata's, and that a process task, a subtask, a map stopped
early and a pool's ``submit`` work with worker processes. Prints one line
per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import importlib.metadata
import sys
import sysconfig
from pathlib import Path

import nestpool
from nestpool import MapIterator, Pool, process_task, thread_subtask


@thread_subtask
def double(x: int) -> int:
    return 2 * x


@process_task
def total(xs: list[int]) -> int:
    return sum(double.map(xs))


def check(what: str, ok: bool) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        sys.exit(1)


def main() -> None:
    package = Path(nestpool.__file__).resolve().parent
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    check(f"nestpool imported from the environment ({package})", package.parent == site)
    check("py.typed is installed", (package / "py.typed").is_file())
    files = [str(f) for f in importlib.metadata.files("nestpool") or []]
    check(
        "no tests or benchmarks installed",
        not any(f.startswith(("tests/", "benchmarks/", "examples/", "docs/")) for f in files),
    )
    check(
        f"version {nestpool.__version__} is the metadata's",
        importlib.metadata.version("nestpool") == nestpool.__version__,
    )
    with Pool(processes=2, threads=4) as pool:
        check("a process task fanning out subtasks", total([1, 2, 3]).result(timeout=60) == 12)
        with total.map([[1], [2], [3], [4]]) as values:
            check("a map is a MapIterator", isinstance(values, MapIterator))
            check("a map stopped early", next(values) == 2)
        check("Pool.submit of a task", pool.submit(total, [5]).result(timeout=60) == 10)
    print(f"smoke test passed: nestpool {nestpool.__version__} from {package}")


if __name__ == "__main__":
    main()
