"""``@per_worker``: one instance of a resource per process (or per thread),
made on first use and closed when the worker exits.

What it owns: the instances made in this process, in the order they were
made, and closing them (``close_all``) when a worker process ends normally,
a Dask worker tears nestpool down, or, in the parent, the interpreter exits.
A forked child forgets its parent's instances without closing them: they
belong to the parent (a socket shared with it, a connection it still uses).

It must never import parent-side modules (workers load it).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar, overload

from ._reach import needs_by_value

__all__ = ["PerWorker", "close_all", "per_worker"]

T = TypeVar("T")

logger = logging.getLogger("nestpool")

#: every instance made in this process, with the factory's name, in order
_made: list[tuple[str, object]] = []
_made_lock = threading.Lock()


class PerWorker(Generic[T]):
    """A factory that gives one instance per process, or per thread.

    Calling it returns this process's instance, made on the first call.

    Use it for what each worker should open once and reuse: an HTTP session,
    a database connection, a loaded model. ``per_worker`` makes one.

    Args:
        factory: the zero-argument callable that makes the resource.
        scope: ``"process"`` (the default) or ``"thread"``.

    Example:
        >>> @per_worker
        ... def session() -> httpx.Client:
        ...     return httpx.Client(timeout=10)
        >>> @thread_subtask
        ... def fetch(url: str) -> bytes:
        ...     return session().get(url).content   # one client per worker
    """

    def __init__(
        self, factory: Callable[[], T], scope: Literal["process", "thread"] = "process"
    ) -> None:
        if scope not in ("process", "thread"):
            raise ValueError(f"scope must be 'process' or 'thread', got {scope!r}")
        if not callable(factory):
            raise TypeError("per_worker needs a zero-argument callable")
        self.__wrapped__ = factory
        self.__module__ = getattr(factory, "__module__", None) or __name__
        self.__name__: str = getattr(factory, "__name__", type(factory).__name__)
        self.__qualname__: str = getattr(factory, "__qualname__", self.__name__)
        self.__doc__ = getattr(factory, "__doc__", None)
        self._scope: Literal["process", "thread"] = scope
        self._lock = threading.Lock()
        self._local = _Instances()

    @property
    def scope(self) -> Literal["process", "thread"]:
        """``"process"``: one instance per process; ``"thread"``: per thread.

        Example:
            >>> per_worker(scope="thread")(requests.Session).scope
            'thread'
        """
        return self._scope

    def __call__(self) -> T:
        """This process's (or thread's) instance, made now if it is the first call.

        Raises:
            Exception: what the factory raised (the next call tries again).
        """
        local = self._local
        if self._scope == "thread":
            made: tuple[int, T] | None = getattr(local.thread, "made", None)
            if made is None or made[0] != os.getpid():
                made = (os.getpid(), self.__wrapped__())
                local.thread.made = made
                _remember(self.__qualname__, made[1])
            return made[1]
        if local.pid == os.getpid():
            return local.value  # type: ignore[no-any-return]
        with self._lock:
            if local.pid != os.getpid():
                local.value = self.__wrapped__()
                local.pid = os.getpid()
                _remember(self.__qualname__, local.value)
            return local.value  # type: ignore[no-any-return]

    def __reduce__(self) -> str | tuple[Any, ...]:
        # By reference where workers find it by name (the module's own, so
        # one per worker whatever refers to it); else the factory by value,
        # with no instance: the worker makes its own.
        module = sys.modules.get(self.__module__)
        named = getattr(module, self.__qualname__, None) is self
        if named and not needs_by_value(self.__wrapped__):
            return str(self.__qualname__)
        return PerWorker, (self.__wrapped__, self._scope)

    def __repr__(self) -> str:
        return f"<per_worker {self.__qualname__} scope={self._scope!r}>"


class _Instances:
    """A ``PerWorker``'s instance in this process (``pid`` says which process
    made it: after a fork the child makes its own) and per thread."""

    __slots__ = ("pid", "thread", "value")

    def __init__(self) -> None:
        self.pid = -1
        self.value: Any = None
        self.thread = threading.local()


def _remember(name: str, value: object) -> None:
    with _made_lock:
        _made.append((name, value))


@overload
def per_worker(factory: Callable[[], T], /) -> PerWorker[T]: ...
@overload
def per_worker(
    *, scope: Literal["process", "thread"] = "process"
) -> Callable[[Callable[[], T]], PerWorker[T]]: ...
def per_worker(
    factory: Callable[[], T] | None = None, /, *, scope: Literal["process", "thread"] = "process"
) -> PerWorker[T] | Callable[[Callable[[], T]], PerWorker[T]]:
    """Make a zero-argument factory give one instance per process (or thread).

    Calling the decorated function returns this process's one instance, made
    on the first call in that process (in a worker, in the parent, or inline)
    and reused by every task and subtask there. With ``scope="thread"`` each
    thread gets its own. When a worker process exits normally, each instance
    it made is closed: ``close()``, or ``__exit__`` for a context manager
    without one; an exception there is logged on the ``nestpool`` logger.
    Instances made in the parent are closed at interpreter exit.

    Args:
        factory: the zero-argument callable that makes the resource.
        scope: ``"process"`` (the default) or ``"thread"``.

    Returns:
        A ``PerWorker[T]``: call it to get the instance.

    Raises:
        ValueError: an unknown ``scope``.
        TypeError: ``factory`` is not callable.

    Example:
        >>> @per_worker
        ... def db() -> sqlite3.Connection:
        ...     return sqlite3.connect("cache.db", check_same_thread=False)
        >>> @per_worker(scope="thread")
        ... def session() -> requests.Session:
        ...     return requests.Session()
    """
    if factory is not None:
        return PerWorker(factory, scope)

    def decorate(fn: Callable[[], T]) -> PerWorker[T]:
        return PerWorker(fn, scope)

    return decorate


def close_all() -> None:
    """Close every instance made in this process, the last made first; an
    error closing one is logged and the others are still closed."""
    with _made_lock:
        made = _made[::-1]
        _made.clear()
    for name, value in made:
        try:
            close = getattr(value, "close", None)
            leave = getattr(value, "__exit__", None)
            if callable(close):
                close()
            elif callable(leave):
                leave(None, None, None)
        except BaseException:
            logger.exception("nestpool: closing the per_worker instance of %s failed", name)


def _forget_in_child() -> None:
    # The parent's instances are the parent's: the child makes its own (each
    # PerWorker notices the new pid) and must not close these at its exit.
    global _made_lock
    _made.clear()
    _made_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(close_all)
