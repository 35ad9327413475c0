"""The ``nestpool`` logger: worker starts, deaths, replacements and timeouts are
logged there; nothing is printed unless the application configures logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nestpool import Pool, TaskTimeoutError, WorkerDiedError

from .ux_helpers import cube, exit_worker, sleep_past_timeout

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "nestpool" and r.levelno == level]


def test_worker_starts_are_logged_at_debug(
    start_method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nestpool")
    with Pool(processes=2, start_method=start_method) as pool:
        assert cube(2).result() == 8
        pids = pool.worker_pids()
    started = [m for m in _messages(caplog, logging.DEBUG) if m.startswith("started worker")]
    assert len(started) == 2
    assert all(any(f"(pid {pid})" in m for m in started) for pid in pids)


def test_a_death_is_a_warning_and_the_replacement_is_logged(
    start_method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nestpool")
    with Pool(processes=1, start_method=start_method):
        with pytest.raises(WorkerDiedError) as info:
            exit_worker(3).result()
        assert cube(3).result() == 27  # runs on the replacement
    dead = info.value.pid
    warnings = _messages(caplog, logging.WARNING)
    assert any(f"worker pid {dead} exited with exit code 3" in m for m in warnings), warnings
    infos = _messages(caplog, logging.INFO)
    assert any(f"to replace worker pid {dead}" in m for m in infos), infos


def test_a_timeout_is_a_warning_naming_the_task(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nestpool")
    with Pool(processes=1):
        with pytest.raises(TaskTimeoutError):
            sleep_past_timeout(30).result()
        assert cube(1).result() == 1
    warnings = _messages(caplog, logging.WARNING)
    assert any("sleep_past_timeout" in m and "timeout of 0.5s" in m for m in warnings), warnings
    assert any("to replace worker pid" in m for m in _messages(caplog, logging.INFO))


def test_a_normal_run_logs_nothing_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="nestpool")
    with Pool(processes=1):
        assert sum(cube.map(range(5))) == 100
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []


def test_nothing_is_printed_by_default() -> None:
    # A fresh interpreter with no logging configured: a worker death is not
    # printed (the NullHandler keeps logging's last-resort handler silent).
    script = textwrap.dedent(
        """
        from nestpool import Pool, WorkerDiedError
        from tests.ux_helpers import exit_worker
        if __name__ == "__main__":
            with Pool(processes=1):
                try:
                    exit_worker(5).result()
                except WorkerDiedError:
                    print("died as expected")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "died as expected"
    assert done.stderr == ""
