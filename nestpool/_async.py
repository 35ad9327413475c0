"""``AsyncMapIterator``, what ``amap`` returns: a map consumed from an event loop.

What it owns: waiting for each next value of a (blocking) map in a thread of
the loop's default executor, losing no value when the consuming task is
cancelled, and closing the map (cancelling what has not started) on
``aclose()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic

from ._map_iterator import MapIterator
from ._progress import Reporter
from ._typing import R

__all__ = ["AsyncMapIterator"]

_END = object()


def _step(iterator: Iterator[Any]) -> Any:
    """In an executor thread: the iterator's next value, or ``_END``."""
    return next(iterator, _END)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # An abandoned step's exception is consumed here, not logged at exit.
    if not future.cancelled():
        future.exception()


class AsyncMapIterator(AsyncIterator[R], Generic[R]):
    """What ``.amap`` returns: ``async for value in task.amap(xs)``.

    The work is the same lazy, bounded map as ``.map`` (it starts at the
    call); each wait for the next value happens in a thread of the event
    loop's default executor, so the loop keeps running while results come.
    Cancelling the consuming task loses no value: the next ``__anext__`` takes
    the value the cancelled one was waiting for. ``await aclose()``, or
    leaving ``async with``, cancels what has not started.

    Not constructed directly: ``.amap`` makes it. Write
    ``AsyncMapIterator[int]`` in an annotation for the map of a task that
    returns ``int``.

    Example:
        >>> async def main() -> int:
        ...     with Pool():
        ...         async with crunch.amap(batches) as totals:
        ...             return sum([n async for n in totals])
    """

    def __init__(self, iterator: MapIterator[R], reporter: Reporter | None = None) -> None:
        self._iterator = iterator
        self._reporter = reporter
        self._step: asyncio.Future[Any] | None = None
        self._finished = False

    def __aiter__(self) -> AsyncMapIterator[R]:
        return self

    async def __anext__(self) -> R:
        if self._finished:
            raise StopAsyncIteration
        step = self._step
        if step is None:
            loop = asyncio.get_running_loop()
            step = self._step = loop.run_in_executor(None, _step, self._iterator)
        try:
            # shield: cancelling the consumer must not lose the value in flight.
            value = await asyncio.shield(step)
        except BaseException:
            if step.done():
                self._step = None
                self._close_sync()
            raise
        self._step = None
        if value is _END:
            self._finished = True
            self._close_sync()
            raise StopAsyncIteration
        if self._reporter is not None:
            self._reporter.advance()
        return value  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncMapIterator[R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel what has not started; take no more input.

        A wait in progress in an executor thread ends first: its value, when
        it arrives, is dropped. Calling it again, or after the end, does
        nothing.

        Example:
            >>> totals = crunch.amap(batches)
            >>> first = await anext(totals)
            >>> await totals.aclose()   # no more batches are sent to workers
        """
        self._finished = True
        step = self._step
        if step is not None and not step.done():
            # The wait in progress may be for a call that never ends: cancel
            # what is in flight now (a stop_on_cancel task's running calls are
            # stopped), so that the wait ends and the map with it.
            self._iterator._cancel_units()
            step.add_done_callback(_retrieve)
            step.add_done_callback(lambda _done: self._close_sync())
            return
        self._close_sync()

    def _close_sync(self) -> None:
        if self._reporter is not None:
            self._reporter.close()
        self._iterator.close()
