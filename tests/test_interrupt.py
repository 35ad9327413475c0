"""Ctrl-C and dead parents, for real: a script in a subprocess opens a pool,
starts long tasks and says "ready"; the test sends it SIGINT (or SIGKILL) and
checks with psutil that no worker (nor the forkserver) is left behind.

What must hold (docs/faults.md, "Ctrl-C and dying parents"): Ctrl-C in the
main process leaves the `with` block promptly (about a second), with no worker
left behind; if the main process is killed, its workers exit by themselves
within seconds. Workers ignore SIGINT.
"""

from __future__ import annotations

import json
import operator
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

import psutil
import pytest

from nestpool import Pool, TaskPicklingError
from tests import fault_tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent

#: how long the script may take to leave the `with` block after SIGINT: about
#: a second is the promise; the margin is for a loaded CI machine.
CTRL_C_BOUND = 3.0
#: how long orphaned workers may take to exit once their parent is killed.
ORPHAN_BOUND = 5.0

_PRELUDE = """
import json, os, signal, sys, time
# Ctrl-C as in a terminal, whatever launched the test: a shell's background
# job starts its children with SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
import multiprocessing.forkserver, multiprocessing.resource_tracker
from pathlib import Path
from nestpool import Pool
from tests import fault_tasks as ft

def wait_files(directory, names):
    deadline = time.monotonic() + 60
    while not all((Path(directory) / n).exists() for n in names):
        if time.monotonic() > deadline:
            raise SystemExit("tasks never started")
        time.sleep(0.01)

def helpers():
    server = multiprocessing.forkserver._forkserver._forkserver_pid
    tracker = multiprocessing.resource_tracker._resource_tracker._pid
    return {"forkserver": server, "tracker": tracker}
"""


class Script:
    """A Python script run in a subprocess (from the repository root)."""

    def __init__(self, body: str, *args: str, new_session: bool = False) -> None:
        code = _PRELUDE + textwrap.dedent(body)
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=new_session,
        )

    def read_line(self, timeout: float = 60.0) -> str:
        """The script's next stdout line (fails the test if none comes in time)."""
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            self.kill()
            pytest.fail(f"the script printed nothing in {timeout}s; stderr: {self.stderr()}")
        line = stdout.readline()
        if not line:
            pytest.fail(f"the script ended early ({self.process.wait()}): {self.stderr()}")
        return line.strip()

    def stderr(self) -> str:
        self.kill()
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        self.kill()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for init counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------- Ctrl-C

_CTRL_C = """
method, mode, directory = sys.argv[1:4]
if __name__ == "__main__":
    pids = []
    try:
        with Pool(processes=2, threads=2, start_method=method) as pool:
            futures = [ft.hold(directory, f"t{i}") for i in range(2)]
            wait_files(directory, ["t0", "t1"])
            pids = pool.worker_pids()
            print(json.dumps({"workers": pids, **helpers()}), flush=True)
            if mode == "result":
                futures[0].result()
            elif mode == "map":
                for _ in ft.hold.map([directory] * 4, [f"m{i}" for i in range(4)]):
                    pass
            elif mode == "sleep":
                time.sleep(60)
            # mode "exit": leave the block at once; its end waits for the tasks
        print("left the with block normally", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic()!r}", flush=True)
        print(json.dumps([f.cancelled() or f.exception() is not None for f in futures]))
"""


@pytest.mark.parametrize("mode", ["sleep", "result", "map", "exit"])
def test_ctrl_c_leaves_the_with_block_promptly_and_kills_the_workers(
    start_method: str, mode: str, tmp_path: Path
) -> None:
    script = Script(_CTRL_C, start_method, mode, str(tmp_path))
    try:
        info = json.loads(script.read_line())
        workers: list[int] = info["workers"]
        assert len(workers) == 2
        sent = time.monotonic()
        script.process.send_signal(signal.SIGINT)
        line = script.read_line(timeout=30)
        assert line.startswith("interrupted "), line
        took = float(line.split()[1]) - sent
        # Every future ended (cancelled or failed): nothing hangs.
        assert json.loads(script.read_line()) == [True, True]
        assert script.process.wait(30) == 0
        print(f"\nCtrl-C ({start_method}, {mode}): left the with block in {took * 1000:.1f} ms")
        assert took < CTRL_C_BOUND
        # The block was left after the workers were stopped: none remains.
        assert all(_gone(pid) for pid in workers), [p for p in workers if not _gone(p)]
        assert "Traceback" not in script.stderr()
    finally:
        script.close()


def test_ctrl_c_to_the_whole_process_group_is_ignored_by_workers(
    start_method: str, tmp_path: Path
) -> None:
    # A terminal's Ctrl-C reaches every process of the foreground group: the
    # workers (and the forkserver) ignore it; only the main process reacts,
    # and no worker prints a KeyboardInterrupt traceback.
    script = Script(_CTRL_C, start_method, "sleep", str(tmp_path), new_session=True)
    try:
        info = json.loads(script.read_line())
        os.killpg(script.process.pid, signal.SIGINT)
        assert script.read_line(timeout=30).startswith("interrupted ")
        assert script.process.wait(30) == 0
        assert wait_until(lambda: all(_gone(pid) for pid in info["workers"]), ORPHAN_BOUND)
        stderr = script.stderr()
        assert "KeyboardInterrupt" not in stderr, stderr
        assert "Traceback" not in stderr, stderr
    finally:
        script.close()


def test_a_worker_ignores_sigint(start_method: str, tmp_path: Path) -> None:
    with Pool(processes=1, start_method=start_method) as pool:
        pid = fault_tasks.getpid().result(timeout=30)
        # Sent from outside while the worker is idle...
        os.kill(pid, signal.SIGINT)
        assert fault_tasks.square(7).result(timeout=30) == 49
        # ...and from inside while it runs a task: the task finishes normally.
        assert fault_tasks.sigint_self_then(str(tmp_path), 5).result(timeout=30) == (5, pid)
        assert pool.worker_pids() == [pid]


# --------------------------------------------------------------------- orphans

_ORPHANS = """
method, directory = sys.argv[1:3]
kinds = ["sleep", "spin", "subtasks", "gil"]
if __name__ == "__main__":
    with Pool(processes=len(kinds), threads=4, start_method=method) as pool:
        futures = [ft.busy(directory, kind, kind) for kind in kinds]
        wait_files(directory, kinds)
        print(json.dumps({"workers": pool.worker_pids(), **helpers()}), flush=True)
        time.sleep(120)
"""


def test_workers_and_forkserver_exit_when_the_parent_is_killed(
    start_method: str, tmp_path: Path
) -> None:
    # One worker sleeps, one spins in a CPU loop, one waits on subtask threads
    # that spin: each notices the end of its channel and exits. The fourth is
    # stuck in C code holding the GIL, so its channel watcher cannot run: the
    # kernel's parent-death signal stops it.
    script = Script(_ORPHANS, start_method, str(tmp_path))
    watched: list[int] = []
    try:
        info: dict[str, Any] = json.loads(script.read_line())
        workers = info["workers"]
        assert len(workers) == 4
        watched = list(workers)
        if start_method == "forkserver":
            assert info["forkserver"] is not None
            watched.append(info["forkserver"])
        else:
            assert info["forkserver"] is None
        if info["tracker"] is not None:
            watched.append(info["tracker"])
        assert not any(_gone(pid) for pid in watched)
        killed = time.monotonic()
        script.process.kill()
        script.process.wait()
        exited = wait_until(lambda: all(_gone(pid) for pid in watched), ORPHAN_BOUND)
        took = time.monotonic() - killed
        left = [pid for pid in watched if not _gone(pid)]
        assert exited, f"still running {ORPHAN_BOUND}s after the parent died: {left} of {info}"
        print(f"\norphans ({start_method}): all exited {took:.3f}s after the parent's SIGKILL")
    finally:
        _kill_leftovers(watched)
        script.close()


def test_a_task_can_still_start_forkserver_processes(start_method: str) -> None:
    # Workers drop the forkserver pipe they inherit (so a dead parent's
    # forkserver can exit): a task that uses the forkserver gets its own.
    with Pool(processes=1, start_method=start_method):
        assert fault_tasks.start_forkserver_child().result(timeout=60) == 0
        assert fault_tasks.start_forkserver_child().result(timeout=60) == 0


def test_a_ctrl_c_that_lands_in_pickling_is_raised_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C can land while the parent pickles a call's arguments: the
    # KeyboardInterrupt must reach the caller, not fail that call as a
    # pickling error (a map would then wait on, as if nothing happened).
    from nestpool._local import LocalBackend

    real = LocalBackend.pack_call
    landed = []

    def interrupted_once(self: Any, args: Any, kwargs: Any) -> Any:
        if not landed:
            landed.append(True)
            raise KeyboardInterrupt
        return real(self, args, kwargs)

    with Pool(processes=1, start_method="forkserver") as pool:
        monkeypatch.setattr(LocalBackend, "pack_call", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            pool.submit(operator.add, 1, 2)
        assert pool.submit(operator.add, 1, 2).result(timeout=30) == 3


def test_a_ctrl_c_that_lands_in_pickling_one_item_of_a_chunk_is_raised_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A chunk that does not pickle is pickled again item by item, to fail the
    # bad items alone: a Ctrl-C landing in that pass reaches the caller too,
    # instead of failing a good item as a pickling error.
    from nestpool._local import LocalBackend

    real = LocalBackend.pack_items
    landed = []

    def interrupted_once(self: Any, items: Any, unary: bool) -> Any:
        if list(items) == [2] and not landed:
            landed.append(True)
            raise KeyboardInterrupt
        return real(self, items, unary)

    bad = fault_tasks.HoldsLock()
    with Pool(processes=1, start_method="forkserver"):
        monkeypatch.setattr(LocalBackend, "pack_items", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            list(fault_tasks.identity.map([1, 2, bad, 3], chunksize=4))
        assert landed == [True]
        # The same map without the Ctrl-C: the bad item alone fails.
        values = fault_tasks.identity.map([1, 2, bad, 3], chunksize=4)
        assert next(values) == 1
        assert next(values) == 2
        with pytest.raises(TaskPicklingError, match="argument"):
            next(values)


def test_a_ctrl_c_while_a_map_reads_its_input_is_raised_at_once(tmp_path: Path) -> None:
    # Not kept for the input's turn after the items in flight (which may run
    # for a long time): raised to the consumer now.
    directory = str(tmp_path)

    def items() -> Iterator[str]:
        yield "held"  # a task in flight for 30 s
        raise KeyboardInterrupt

    with Pool(processes=1, start_method="forkserver") as pool:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            next(fault_tasks.hold.map(repeat(directory), items(), repeat(30.0), chunksize=1))
        assert time.monotonic() - started < 10
        pool.terminate()
