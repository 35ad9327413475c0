"""Where am I? The routing table (docs/routing.md) as one function.

| where the call happens         | a process task              | a thread subtask                 |
|--------------------------------|-----------------------------|----------------------------------|
| no pool open in this process   | inline, completed future    | inline, completed future         |
| a Pool open in this process    | queued to a worker          | the pool's thread pool, here     |
| inside a worker process        | inline in that worker       | that worker's persistent pool    |

A ``Pool`` registers itself here when it is created and unregisters when it shuts
down; a worker process (local or Dask) installs a ``WorkerRoute`` at start. The
answer is one read of a module global, so the hot path pays nothing for it.
A pool is held here weakly (a ``weakref.proxy`` in that global): as with
``ProcessPoolExecutor``, a pool the program no longer holds is shut down
(``Pool.__del__``), not kept open by its route.

This module never imports the pool or the dispatcher: routes are duck-typed
(``Route``), so worker processes stay light.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from ._reach import Reach
    from ._serialize import FunctionPayload
    from ._subtask_pool import SubtaskPool

__all__ = [
    "Route",
    "TaskOptions",
    "current",
    "enter_worker",
    "in_worker",
    "register",
    "subtask_pool_here",
    "unregister",
]


class TaskOptions:
    """What a decorated function carries: its name and options, resolved once."""

    __slots__ = (
        "factory",
        "fn",
        "kind",
        "name",
        "payloads",
        "retries",
        "stop_on_cancel",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        timeout: float | None,
        kind: str,
        factory: Callable[[Reach], FunctionPayload] | None = None,
        retries: int = 0,
        stop_on_cancel: bool = False,
    ) -> None:
        self.fn: Callable[..., Any] = fn
        self.name: str = name
        self.timeout: float | None = timeout
        #: more tries for a call whose worker died or ran past ``timeout``
        self.retries: int = retries
        #: ``cancel()`` on a running call's future stops its worker (``_stop``)
        self.stop_on_cancel: bool = stop_on_cancel
        #: "process" or "subtask"
        self.kind: str = kind
        #: builds the payload; called on first dispatch, not at decoration,
        #: because the function's module has not finished importing then.
        #: ``factory(reach)``: the pickled function for workers of that reach
        self.factory: Callable[[Reach], FunctionPayload] | None = factory
        #: by reach (see ``_reach.Reach``), made on first use (shared with
        #: the variants ``options()`` makes: they run the same function)
        self.payloads: dict[str, FunctionPayload] = {}

    def variant(self, timeout: float | None, retries: int, stop_on_cancel: bool) -> TaskOptions:
        """The same function and name with other options (its pickles shared)."""
        other = TaskOptions(
            self.fn, self.name, timeout, self.kind, self.factory, retries, stop_on_cancel
        )
        other.payloads = self.payloads
        return other

    def get_payload(self, reach: Reach = "spawned") -> FunctionPayload:
        """The pickled function a worker of that reach runs (made once).

        Args:
            reach: the workers it must reach (see ``_reach.Reach``).
        """
        payload = self.payloads.get(reach)
        if payload is None:
            assert self.factory is not None
            payload = self.payloads[reach] = self.factory(reach)
        return payload


class Route(Protocol):
    """What a place that runs decorated calls offers (a pool, a worker)."""

    def submit_task(
        self, options: TaskOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        """Run one process task; return its future."""
        ...

    def map_task(
        self,
        options: TaskOptions,
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        chunksize: int | None,
        buffersize: int | None,
    ) -> Iterator[Any]:
        """Run a process task over the zipped iterables; iterate the values."""
        ...

    def subtask_pool(self) -> SubtaskPool | None:
        """The thread pool subtasks go to here, or None to run them inline."""
        ...


#: re-entrant: a pool dropped while this thread holds it (the cyclic GC ran
#: its ``__del__`` here) unregisters itself
_lock = threading.RLock()
#: the open pools, oldest first, held weakly
_pools: list[weakref.ReferenceType[Route]] = []
_worker_route: Route | None = None
# The one value the hot path reads: the route decorated calls take now (a
# pool's weak proxy, or the worker's route).
_current: Route | None = None


def current() -> Route | None:
    """Return the route for a call made now in this process, None for inline."""
    if _worker_route is not None:
        return _worker_route
    with _lock:
        return _pools[-1]() if _pools else None


def subtask_pool_here() -> SubtaskPool | None:
    """The thread pool a subtask called now goes to: the open pool's, or this
    worker's; None to run it inline (no pool, or one with ``threads=0``)."""
    route = _current
    if route is None:
        return None
    try:
        return route.subtask_pool()
    except ReferenceError:  # the pool was dropped this instant: none is open
        return None


def in_worker() -> bool:
    """True inside a nestpool worker process (or a Dask worker running nestpool)."""
    return _worker_route is not None


def _recompute() -> None:
    global _current
    if _worker_route is not None:
        # Inside a worker the worker's rule wins: no nested process fan-out.
        _current = _worker_route
        return
    _pools[:] = [ref for ref in _pools if ref() is not None]
    route = _pools[-1]() if _pools else None
    _current = None if route is None else cast("Route", weakref.proxy(route))


def register(route: Route) -> None:
    """A pool opened in this process: calls route to it until it unregisters.

    When several pools are open at once, the most recently opened one wins,
    until it shuts down (see docs/routing.md).
    """
    with _lock:
        _pools.append(weakref.ref(route))
        _recompute()


def unregister(route: Route) -> None:
    """A pool shut down: calls route to the previous open pool, or run inline."""
    with _lock:
        for index in range(len(_pools) - 1, -1, -1):
            if _pools[index]() is route:
                del _pools[index]
                break
        _recompute()


def open_routes() -> list[Route]:
    """The pools open in this process, oldest first."""
    with _lock:
        return [route for route in (ref() for ref in _pools) if route is not None]


def enter_worker(route: Route) -> None:
    """Mark this process as a worker: process tasks run inline, subtasks go to
    ``route``'s persistent thread pool. Also drops pools inherited through fork,
    which belong to the parent."""
    global _worker_route
    with _lock:
        _pools.clear()
        _worker_route = route
        _recompute()


def _forget_pools_in_fork_child() -> None:
    # A forked child has none of the parent's pool threads: a pool open in the
    # parent is not open here, so calls in the child run inline (or take the
    # worker route that a nestpool worker installs right after).
    global _lock
    _lock = threading.RLock()
    _pools.clear()
    _recompute()


os.register_at_fork(after_in_child=_forget_pools_in_fork_child)
