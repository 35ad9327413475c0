"""Task functions for the collation, gather and deadlock tests (importable by
workers under every start method).

Gates between the test and a worker are files the test creates (``gate-3``);
a task says it started by creating one (``started-3``). Gates between threads
of one process are ``threading.Event``s in a ``Control`` passed as argument.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    Future,
    as_completed,
    wait,
)
from pathlib import Path
from typing import Any

from nestpool import gather, process_task, thread_subtask

#: how long a task waits for a gate before it gives up (a test bug, not a pass)
GATE_SECONDS = 20.0


def wait_for_path(path: str | Path, seconds: float = GATE_SECONDS) -> None:
    """Block until ``path`` exists (sleeping inside the task is fine)."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


class Counting(Iterator[Any]):
    """An iterator that counts how many items have been taken from it."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._it = iter(iterable)
        self.taken = 0

    def __iter__(self) -> Counting:
        return self

    def __next__(self) -> Any:
        value = next(self._it)
        self.taken += 1
        return value


def drain(values: Iterable[Any]) -> tuple[list[Any], BaseException | None]:
    """Collect values until the iterator ends or raises; return both."""
    got: list[Any] = []
    try:
        for value in values:
            got.append(value)  # noqa: PERF402 - keep what came before the error
    except Exception as exc:
        return got, exc
    return got, None


def failing_input(good: int) -> Iterator[int]:
    """Yield ``0 .. good-1``, then raise ``LookupError('input ran dry')``."""
    yield from range(good)
    raise LookupError("input ran dry")


class Control:
    """Events for threads of one process: per-item 'started' and 'gate'."""

    def __init__(self, n: int, block_from: int = 1) -> None:
        #: sub_record: items from this one on wait for ``gate``
        self.block_from = block_from
        self.started = [threading.Event() for _ in range(n)]
        self.gates = [threading.Event() for _ in range(n)]
        self.gate = threading.Event()
        self.ran: list[int] = []
        self.lock = threading.Lock()
        self.futures: list[Future[Any]] = []

    def all_started(self, seconds: float = GATE_SECONDS) -> bool:
        deadline = time.monotonic() + seconds
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self.started)


# ------------------------------------------------------------ process tasks


@process_task
def twice(x: int) -> int:
    """A trivial process task."""
    return 2 * x


@process_task
def add(a: int, b: int) -> int:
    """A process task of two arguments."""
    return a + b


@process_task(timeout=30.0)
def twice_timed(x: int) -> int:
    """A trivial process task with a timeout (its map is never batched)."""
    return 2 * x


def _raise_for(x: int) -> int:
    if x % 5 == 2:
        raise KeyError(f"key {x}")
    if x % 5 == 4:
        raise ValueError(f"value {x}")
    return x


@process_task
def raise_for(x: int) -> int:
    """x % 5 == 2: KeyError('key x'); x % 5 == 4: ValueError('value x'); else x."""
    return _raise_for(x)


@process_task
def gated(directory: str, i: int, fail: bool = False) -> int:
    """Create ``started-i``, wait for ``gate-i``, then return ``i`` (or raise
    ``ValueError('item i failed')`` when ``fail``)."""
    Path(directory, f"started-{i}").touch()
    wait_for_path(Path(directory, f"gate-{i}"))
    if fail:
        raise ValueError(f"item {i} failed")
    return i


@process_task
def record_and_wait(directory: str, i: int) -> int:
    """Create ``ran-i``; item 0 returns at once, the others wait for ``gate``."""
    Path(directory, f"ran-{i}").touch()
    if i:
        wait_for_path(Path(directory, "gate"))
    return i


def touch_then_wait(directory: str, i: int) -> int:
    """A plain function (for ``ProcessPoolExecutor`` too): create ``ran-i``;
    item 0 returns at once, the others wait for ``gate``."""
    return record_and_wait.__wrapped__(directory, i)


def ran_items(directory: str | Path) -> set[int]:
    """The items ``record_and_wait`` ran, from its files."""
    return {int(p.name[4:]) for p in Path(directory).glob("ran-*")}


@process_task
def wait_for_file_then(path: str, value: int) -> int:
    """Wait for ``path``, then return ``value``."""
    wait_for_path(path)
    return value


# ------------------------------------------------------------ subtasks


@thread_subtask
def sub_twice(x: int) -> int:
    """A trivial subtask."""
    return 2 * x


@thread_subtask
def sub_raise_for(x: int) -> int:
    """As ``raise_for``, on a thread."""
    return _raise_for(x)


@thread_subtask
def sub_gated(control: Control, i: int, fail: bool = False) -> int:
    """Set ``started[i]``, wait for ``gates[i]``, return ``i`` (or raise)."""
    control.started[i].set()
    if not control.gates[i].wait(GATE_SECONDS):
        raise TimeoutError(f"gate {i} never opened")
    if fail:
        raise ValueError(f"item {i} failed")
    return i


@thread_subtask
def sub_record(control: Control, i: int) -> int:
    """Record ``i`` in ``control.ran``; items from ``control.block_from`` on
    wait for ``gate``."""
    with control.lock:
        control.ran.append(i)
    if i >= control.block_from and not control.gate.wait(GATE_SECONDS):
        raise TimeoutError("gate never opened")
    return i


@thread_subtask
def sub_ident(x: int) -> tuple[int, int]:
    """``(x, thread ident)``."""
    return x, threading.get_ident()


# ------------------------------------------------------------ in a worker


@process_task
def bounds_in_worker(buffersize: int | None) -> tuple[list[int], int, int]:
    """In a worker: take 10 values of a subtask map over an endless counted
    input; return them, how many items were taken, and the pool's threads."""
    from nestpool import _subtask_pool

    counter = Counting(itertools.count())
    values = sub_twice.map(counter, buffersize=buffersize)
    taken = [next(values) for _ in range(10)]
    consumed = counter.taken
    values.close()  # type: ignore[attr-defined]
    return taken, consumed, _subtask_pool.this_process_subtask_pool(None).max_workers


@process_task
def process_map_in_worker() -> dict[str, Any]:
    """In a worker: a process task's map runs inline, lazily, in this process."""
    counter = Counting(itertools.count())
    values = twice.map(counter, buffersize=3)
    taken = [next(values) for _ in range(10)]
    consumed = counter.taken
    values.close()  # type: ignore[attr-defined]
    after_close = list(values)
    return {
        "taken": taken,
        "consumed": consumed,
        "after_close": after_close,
        "unordered": list(twice.map(range(5), ordered=False)),
        "pids": {os.getpid()} | set(pid_of.map(range(3))),
        "pid": os.getpid(),
    }


@process_task
def pid_of(_: object = None) -> int:
    """The pid of the process that ran the call."""
    return os.getpid()


@process_task
def unordered_in_worker(order: list[int], fail: int | None = None) -> list[Any]:
    """In a worker: release subtasks in ``order``, one at a time, and record
    what an unordered map yields after each release (an exception as
    ``(type name, message)``)."""
    n = len(order)
    control = Control(n)
    values = sub_gated.map([control] * n, range(n), [i == fail for i in range(n)], ordered=False)
    # Every item runs on a pool thread of its own (threads >= n): wait until
    # all have started, so that this thread does not run one itself.
    if not control.all_started():
        raise TimeoutError("the subtasks did not all start")
    got: list[Any] = []
    try:
        for i in order:
            control.gates[i].set()
            try:
                got.append(next(values))
            except ValueError as exc:
                got.append(("ValueError", str(exc)))
            except StopIteration:
                got.append("stop")
    finally:
        for gate in control.gates:
            gate.set()
    return got


@process_task
def early_exit_in_worker(how: str) -> tuple[list[int], int, Any]:
    """In a worker: take one value of a bounded subtask map, then leave it
    (``close``, ``break``), and report what ran and how much input was taken."""
    control = Control(0)
    counter = Counting(itertools.count())
    if how == "close":
        values = sub_record.map(itertools.repeat(control), counter, buffersize=4)
        first = next(values)
        _wait_ran(control, 1)
        values.close()  # type: ignore[attr-defined]
        rest = list(values)
    else:
        rest = []
        for value in sub_record.map(itertools.repeat(control), counter, buffersize=4):
            first = value
            _wait_ran(control, 1)
            break
    control.gate.set()
    with control.lock:
        ran = list(control.ran)
    return ran, counter.taken, (first, rest)


def _wait_ran(control: Control, item: int) -> None:
    deadline = time.monotonic() + GATE_SECONDS
    while item not in control.ran:
        if time.monotonic() > deadline:
            raise TimeoutError(f"item {item} never ran")
        time.sleep(0.005)


@process_task
def subtask_errors_in_worker() -> list[Any]:
    """In a worker: what a subtask map's exceptions look like here."""
    out: list[Any] = []
    for chunksize in (1, 5):
        values = sub_raise_for.map(range(10), chunksize=chunksize)
        got, exc = drain(values)
        assert exc is not None
        frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
        got.append((type(exc).__name__, exc.args, "_raise_for" in frames))
        got.append(list(values))  # finished after the exception
        out.append(got)
    return out


@process_task
def map_raises_in_worker() -> int:
    """Let a subtask map's exception leave the process task."""
    return sum(sub_raise_for.map(range(5)))


# ------------------------------------------------------------ waiting styles

#: Every way of waiting on futures that must run unstarted subtasks itself.
STYLES = [
    "result",
    "result_timeout",
    "exception",
    "gather",
    "gather_return_exceptions",
    "wait_all",
    "wait_first_completed",
    "wait_first_exception",
    "as_completed",
    "as_completed_timeout",
    "map_ordered",
    "map_unordered",
]


def wait_by(style: str, futures: list[Future[int]]) -> list[int]:
    """Wait for ``futures`` in the given style; return their values in order."""
    if style == "result":
        return [f.result() for f in futures]
    if style == "result_timeout":
        return [f.result(timeout=GATE_SECONDS) for f in futures]
    if style == "exception":
        assert all(f.exception() is None for f in futures)
    elif style == "gather":
        return gather(futures)
    elif style == "gather_return_exceptions":
        values = gather(futures, return_exceptions=True)
        assert not any(isinstance(v, BaseException) for v in values), values
    elif style == "wait_all":
        done, not_done = wait(futures, return_when=ALL_COMPLETED)
        assert not not_done
    elif style == "wait_first_completed":
        pending: set[Future[int]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            assert done
    elif style == "wait_first_exception":
        done, not_done = wait(futures, return_when=FIRST_EXCEPTION)
        assert not not_done
    elif style == "as_completed":
        assert len(list(as_completed(futures))) == len(futures)
    elif style == "as_completed_timeout":
        assert len(list(as_completed(futures, timeout=GATE_SECONDS))) == len(futures)
    else:
        raise ValueError(f"unknown style {style!r}")
    return [f.result(timeout=0) for f in futures]


@thread_subtask
def leaf(x: int) -> int:
    """A subtask that returns at once."""
    return x


@thread_subtask
def nest(depth: int, style: str) -> int:
    """``depth`` levels of subtasks, each waiting (in ``style``) on the next
    level and on a leaf; returns ``depth``."""
    if depth == 0:
        return 0
    if style in ("map_ordered", "map_unordered"):
        ordered = style == "map_ordered"
        values = list(nest.map([depth - 1, 0], [style, style], ordered=ordered))
        return max(values) + 1
    futures = [nest(depth - 1, style), leaf(0)]
    return max(wait_by(style, futures)) + 1


@thread_subtask
def fan(n: int) -> int:
    """A subtask that maps over ``n`` subtasks."""
    return sum(leaf.map(range(n)))


@process_task
def nest_in_worker(depth: int, styles: list[str]) -> dict[str, int]:
    """In a worker: ``nest`` in every style, waited on by this runner thread."""
    return {style: nest(depth, style).result() for style in styles}


@process_task
def fan_in_worker(n: int) -> tuple[int, int]:
    """In a worker: a subtask that maps over ``n`` subtasks, and a map of those."""
    return fan(n).result(), sum(fan.map([n, n]))


#: tasks_per_process=4 test: the four process tasks of a round meet here
#: first, so that all four wait on subtasks at once (one per worker process).
_FOUR = threading.Barrier(4)


@process_task
def four_at_once(style: str, depth: int) -> int:
    """Meet three other process tasks of this worker, then wait on subtasks."""
    _FOUR.wait(GATE_SECONDS)
    return nest(depth, style).result()


@thread_subtask
def blocker(control: Control) -> str:
    """Started on a pool thread, it blocks until ``control.gate`` opens."""
    control.started[0].set()
    if not control.gate.wait(GATE_SECONDS):
        raise TimeoutError("gate never opened")
    return "blocker"


@thread_subtask
def named(name: str) -> str:
    """Return ``name``."""
    return name


@thread_subtask
def wait_on_mix(control: Control, style: str) -> list[str]:
    """With threads=2: one pool thread runs ``blocker``, this one waits on it
    and on a subtask queued behind it that no thread has started."""
    if not control.started[0].wait(GATE_SECONDS):
        raise TimeoutError("blocker never started")
    queued = named("queued")
    running = control.futures[0]
    mix = [running, queued]
    if style == "wait_first_completed":
        done, _ = wait(mix, return_when=FIRST_COMPLETED)
        got = sorted(f.result() for f in done)
    elif style == "as_completed_timeout":
        got = [next(as_completed(mix, timeout=GATE_SECONDS)).result()]
    elif style == "as_completed":
        got = [next(as_completed(mix)).result()]
    else:
        raise ValueError(style)
    control.gate.set()
    return got


class Box:
    """A value that can be weakly referenced (to see when it is freed)."""

    def __init__(self, value: int) -> None:
        self.value = value


@process_task
def boxed(x: int) -> Box:
    """A process task whose value is a ``Box``."""
    return Box(x)


@thread_subtask
def sub_boxed(x: int) -> Box:
    """A subtask whose value is a ``Box``."""
    return Box(x)


@process_task
def with_blocks_in_worker() -> list[list[int]]:
    """In a worker: ``with`` on a process task's (inline) map and a subtask's."""
    out: list[list[int]] = []
    with twice.map(range(5)) as values:  # type: ignore[attr-defined]
        out.append([next(values), next(values)])
    out.append(list(values))
    with sub_twice.map(range(3)) as values:  # type: ignore[attr-defined]
        out.append(list(values))
    return out
