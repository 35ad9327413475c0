"""``async with Pool(...)``: entering and leaving a pool from an event loop.

What it owns: doing the blocking part of entering (starting the engine) and of
leaving (waiting for the work, or stopping the workers) in a helper thread of
its own, awaited, so that the event loop keeps running; and deciding how the
block is left: normally, wait for all submitted work; by an exception, cancel
what has not started and wait for what runs (as ``with``); by cancellation of
the task that holds the pool (Ctrl-C under ``asyncio.run``, a timeout) or by
``KeyboardInterrupt``, terminate the workers at once, then let the
cancellation go on.

Helper threads, not the loop's default executor: a program may have filled
that executor with its own long calls, and Ctrl-C must not queue behind them.

It never touches the backend, the dispatcher or a process: it calls the
pool's own ``shutdown`` and ``terminate``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["STOPPING", "enter", "leave"]

T = TypeVar("T")

#: What stops the workers at once when it ends a ``with`` or ``async with``
#: block: the holding task was cancelled (under ``asyncio.run``, Ctrl-C
#: cancels the main task on Python 3.11+, and every task once
#: ``KeyboardInterrupt`` has left the loop on 3.10), or Ctrl-C was raised in
#: the block's own code.
STOPPING = (asyncio.CancelledError, KeyboardInterrupt)


def _off_loop(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run ``fn`` in a new helper thread; a future of the running loop gets
    its outcome. Cancelling that future does not stop ``fn``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():  # the awaiting task was cancelled meanwhile
            return
        if error is None:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            future.set_exception(error)

    def run() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = context.run(fn)
        except BaseException as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop has closed: nobody waits for the outcome any more

    threading.Thread(target=run, name=name).start()
    return future


async def _terminate(pool: Pool) -> None:
    """Stop the workers now (``Pool.terminate``, in a helper thread) and wait
    until they are gone, whatever further cancellations arrive meanwhile:
    leaving before that would leave workers behind."""
    try:
        stopping = _off_loop(pool.terminate, f"{pool._name}-terminate")
    except BaseException:
        # Ctrl-C landed in the thread's start: stop them here (terminating
        # twice is harmless), then let it go on.
        pool.terminate()
        raise
    while True:
        try:
            await asyncio.shield(stopping)
            return
        except asyncio.CancelledError:
            # A second Ctrl-C, or asyncio.run cancelling every task on its
            # way out: the caller re-raises its cancellation once done.
            if stopping.done():
                return


async def enter(pool: Pool) -> Pool:
    """``Pool.__aenter__``: start the pool's engine off the loop.

    A pool already entered or closed is entered as ``with`` enters it: no
    error (a closed pool refuses work when work is given). If the entering
    task is cancelled, the pool is terminated before the cancellation goes
    on: the block never runs, so nothing else would close it.
    """
    try:
        await _off_loop(pool._start_engine, f"{pool._name}-enter")
    except BaseException:
        await _terminate(pool)
        raise
    return pool


async def leave(pool: Pool, exc_type: type[BaseException] | None) -> None:
    """``Pool.__aexit__``: leave as ``with`` does, without blocking the loop;
    on cancellation or Ctrl-C, stop the workers at once.

    On Python 3.10, and at a second Ctrl-C on later versions, the
    ``KeyboardInterrupt`` may be raised anywhere in the loop's thread, this
    function's own steps included: every step is inside the ``try``, so that
    whatever ends the wait stops the workers.
    """
    try:
        if exc_type is None or not issubclass(exc_type, STOPPING):
            shutdown = functools.partial(
                pool.shutdown, wait=True, cancel_futures=exc_type is not None
            )
            await _off_loop(shutdown, f"{pool._name}-exit")
            return
    except BaseException:
        # Cancelled while the work finishes (Ctrl-C, a timeout): stop now. The
        # shutdown's thread ends once the workers are gone.
        await _terminate(pool)
        raise
    await _terminate(pool)
