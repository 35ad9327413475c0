"""What every workload shares: sizes, repeats, ratios, tables, RSS and CPU helpers.

A workload measures each engine (nestpool and its baselines) in the same run and
reports *ratios*, never bare times: the machine may be shared and noisy, and a
ratio of two figures taken minutes apart on the same machine is far more
stable than either figure. Each figure is the minimum and the median of at
least three repeats.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Size:
    """How big a run is: ``smoke`` (seconds, CI), ``quick`` (~2 min), ``full``."""

    name: str
    repeats: int

    @property
    def smoke(self) -> bool:
        return self.name == "smoke"

    @property
    def quick(self) -> bool:
        return self.name == "quick"

    @property
    def full(self) -> bool:
        return self.name == "full"

    def pick(self, smoke: Any, quick: Any, full: Any) -> Any:
        """The value for this size."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.name]


@dataclass
class Row:
    """One line of a result table: an engine (or a variant) and its figures.

    ``values`` are the raw repeats (seconds, MB, microseconds: see ``unit``);
    ``ratio_min``/``ratio_median`` are what the table shows, computed by the
    workload (each baseline's time / nestpool's, or nestpool's / the ideal).
    """

    label: str
    values: list[float]
    unit: str = "s"
    ratio_min: float | None = None
    ratio_median: float | None = None
    note: str = ""

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass
class Check:
    """A performance target and whether this run met it."""

    target: str
    figure: str
    met: bool


@dataclass
class Table:
    """A result table: a title, what the ratio column means, its rows."""

    title: str
    ratio: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    """What a workload returns to the runner."""

    name: str
    title: str
    setup: str
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def repeat(fn: Callable[[], float], times: int) -> list[float]:
    """Call ``fn`` (which returns one measurement) ``times`` times."""
    return [fn() for _ in range(times)]


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def ratio_rows(rows: list[Row], reference: Row, *, invert: bool = False) -> None:
    """Fill each row's ratio against ``reference``: row / reference (``invert``:
    reference / row), from the minima and from the medians."""
    for row in rows:
        if invert:
            row.ratio_min = reference.min / row.min
            row.ratio_median = reference.median / row.median
        else:
            row.ratio_min = row.min / reference.min
            row.ratio_median = row.median / reference.median


def ideal_rows(rows: list[Row], ideal: float) -> None:
    """Fill each row's ratio as its time / a computed ideal time."""
    for row in rows:
        row.ratio_min = row.min / ideal
        row.ratio_median = row.median / ideal


# ------------------------------------------------------------------ CPU work


def spin(iterations: int) -> int:
    """Pure-Python CPU work that holds the GIL: a fixed number of loop turns."""
    total = 0
    for i in range(iterations):
        total += i * i
    return total


_CALIBRATION = 200_000


def calibrate_spin() -> float:
    """Loop turns of ``spin`` per millisecond of one core, now (best of 7)."""
    spin(_CALIBRATION)
    best = min(timed(lambda: spin(_CALIBRATION)) for _ in range(7))
    return _CALIBRATION / (best * 1000)


def sleep_cpu_seconds(calls: int = 50, seconds: float = 0.001) -> float:
    """CPU seconds one ``time.sleep`` costs this process, however long it
    sleeps (a timer armed and a wake-up taken: syscalls, and on a virtual
    machine, exits to the hypervisor); the best of 3 rounds of ``calls``."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls):
            time.sleep(seconds)
        best = min(best, (time.process_time() - started) / calls)
    return best


def usable_cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


# ------------------------------------------------------------------ memory


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: clear_refs 5); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """This process's peak RSS since start or the last ``reset_peak_rss``."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


@contextmanager
def peak_growth() -> Iterator[dict[str, float]]:
    """Measure the peak RSS growth of the block, in MB, exactly: the kernel's
    high-water mark is reset at the start, read at the end (no sampling)."""
    out: dict[str, float] = {}
    reset_ok = reset_peak_rss()
    before = rss_bytes()
    yield out
    peak = peak_rss_bytes()
    out["growth_mb"] = max(0, peak - before) / 1e6
    out["exact"] = float(reset_ok)


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.3g} {unit}"
