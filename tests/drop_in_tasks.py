"""Task functions for tests/test_drop_in.py (importable by the workers under
every start method)."""

from __future__ import annotations

import functools
import multiprocessing.context
import os
from concurrent.futures import Future
from typing import Any, ClassVar

from nestpool import _routing, process_task, thread_subtask


@process_task
def describe(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any], int, bool]:
    """What it was called with, and where: its pid and whether in a worker."""
    return args, kwargs, os.getpid(), _routing.in_worker()


@process_task
def scaled(x: int, *, k: int = 1) -> int:
    """``x`` times ``k``."""
    return x * k


@thread_subtask
def subtask_scaled(x: int, *, k: int = 1) -> int:
    """``scaled`` as a thread subtask."""
    return x * k


class Scaler:
    """A decorated method, for partials of a bound task."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    @process_task
    def scale(self, x: int, *, offset: int = 0) -> int:
        """``x`` times the instance's factor, plus ``offset``."""
        return x * self.factor + offset


@process_task
def returns_future(x: int) -> Future[int]:
    """The mistake: a decorated task called inside a task, its Future returned."""
    return scaled(x)


@process_task
def returns_futures(xs: list[int]) -> list[Future[int]]:
    """The same mistake, the Futures in a list."""
    return [scaled(x) for x in xs]


class CustomCall(functools.partial[Any]):
    """A partial with its own ``__call__``: the pool leaves it alone."""

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs)


class Labelled(functools.partial[Any]):
    """A partial subclass that calls as a partial does."""


def where(i: int) -> tuple[int, int, bool]:
    """A Dask graph's task: its input, and where it ran (pid, in a worker)."""
    return i, os.getpid(), _routing.in_worker()


def collect(parts: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """A Dask graph's last task: gathers the others' results."""
    return sorted(parts)


class _Counted:
    """Records, in the parent, the pid of every process the context starts."""

    started: ClassVar[list[int]] = []

    def start(self) -> None:
        super().start()  # type: ignore[misc]
        _Counted.started.append(self.pid)  # type: ignore[attr-defined]


class CountedForkProcess(_Counted, multiprocessing.context.ForkProcess):
    """A fork process that is counted."""


class CountedForkServerProcess(_Counted, multiprocessing.context.ForkServerProcess):
    """A forkserver process that is counted."""


class CountedSpawnProcess(_Counted, multiprocessing.context.SpawnProcess):
    """A spawn process that is counted."""


class CountingForkContext(multiprocessing.context.ForkContext):
    """A fork context whose processes are counted."""

    Process = CountedForkProcess


class CountingForkServerContext(multiprocessing.context.ForkServerContext):
    """A forkserver context whose processes are counted."""

    Process = CountedForkServerProcess


class CountingSpawnContext(multiprocessing.context.SpawnContext):
    """A spawn context whose processes are counted."""

    Process = CountedSpawnProcess


COUNTING_CONTEXTS: dict[str, type[multiprocessing.context.BaseContext]] = {
    "fork": CountingForkContext,
    "forkserver": CountingForkServerContext,
    "spawn": CountingSpawnContext,
}
