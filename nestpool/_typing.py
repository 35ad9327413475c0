"""Type variables and aliases shared by the package; no runtime behaviour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar

__all__ = ["FutureLike", "P", "R", "T"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class FutureLike(Protocol[T_co]):
    """What ``gather`` needs of a future: a ``concurrent.futures.Future[T]``.

    ``Future`` is invariant, so ``Iterable[Future[T]]`` would reject a list of
    a ``Future[int]`` and a ``Future[str]`` (and even of a ``Future[int]`` and
    a ``Future[float]``); through this covariant protocol ``T`` is their union.
    ``result(timeout)`` keeps asyncio futures out: ``gather`` blocks, and an
    asyncio future is awaited, not waited for.
    """

    def result(self, timeout: float | None = None) -> T_co: ...

    def exception(self, timeout: float | None = None) -> BaseException | None: ...

    def cancelled(self) -> bool: ...

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...
