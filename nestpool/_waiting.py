"""How nestpool's own code blocks, in any thread of the parent or a worker.

What it owns: ``wait_for``, the one way nestpool waits on something (a task
thread gives its compute slot up while it blocks; the main thread waits in
slices so that Ctrl-C gets through), and ``OneShotEvent``, an event that a
Ctrl-C cannot leave locked.

Both exist because of how CPython delivers a signal: only to the main thread,
between bytecodes. A signal that arrives just before an untimed lock wait is
acted on only when that wait ends, and a ``KeyboardInterrupt`` raised inside
Python code that holds a lock can leave that lock held.

It must never take a lock in Python code around a wait the main thread can
make, and never import futures or pools: they build on it.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable

from . import _compute_slots

__all__ = ["POLL_SECONDS", "OneShotEvent", "wait_event", "wait_for"]

#: The longest single block of nestpool's own waits in the main thread, so that
#: a Ctrl-C gets through within it (SPEC: Ctrl-C leaves the ``with`` block
#: promptly).
POLL_SECONDS = 0.1


def wait_for(wait: Callable[[float | None], bool], timeout: float | None = None) -> bool:
    """Block in ``wait(timeout)`` (True once what it waits for happened) the way
    nestpool's own waits must: a task thread holding a compute slot gives it up
    if the wait lasts more than its grace, and the main thread waits in slices
    of ``POLL_SECONDS`` so that Ctrl-C gets through promptly."""
    grace = _compute_slots.GRACE_SECONDS
    if _compute_slots.holds_one() and (timeout is None or timeout > grace):
        if wait(grace):
            return True
        _compute_slots.give_up()
        if timeout is not None:
            timeout -= grace
    if threading.current_thread() is not threading.main_thread():
        return wait(timeout)
    if timeout is None:
        while not wait(POLL_SECONDS):
            pass
        return True
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return wait(0)
        if wait(min(POLL_SECONDS, remaining)):
            return True


class OneShotEvent:
    """An event that is set once and never cleared, whose ``wait`` holds no
    lock in Python code, so that a Ctrl-C cannot leave it locked.

    ``threading.Event.wait`` takes its condition's lock in
    ``Condition.__enter__``, Python code: a KeyboardInterrupt raised there
    just after the lock is taken (CPython's bpo-29988) leaves it taken, and
    the next ``wait()`` or ``set()`` blocks forever. A Ctrl-C while leaving a
    pool's ``with`` block would so hang both the main thread's next wait and
    the dispatcher's ``set()``. Here the waiter blocks in C on a lock that
    ``set()`` releases.
    """

    __slots__ = ("_flag", "_gate")

    def __init__(self) -> None:
        self._flag = False
        self._gate = _thread.allocate_lock()
        self._gate.acquire()

    def is_set(self) -> bool:
        """True once ``set()`` was called."""
        return self._flag

    def set(self) -> None:
        """Set it; every waiter wakes."""
        self._flag = True
        try:
            self._gate.release()
        except RuntimeError:
            pass  # set already

    def wait(self, timeout: float | None = None) -> bool:
        """Block until it is set or ``timeout`` passes; True if it is set."""
        if self._flag:
            return True
        # In slices of at most a second: a waiter interrupted between taking
        # the gate and passing it on would otherwise keep the next one
        # waiting; each slice reads the flag again.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._flag:
            remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if remaining <= 0:
                break
            if self._gate.acquire(True, remaining):
                self._gate.release()  # pass the wake-up on to the next waiter
                return True
        return self._flag


def wait_event(event: threading.Event | OneShotEvent, timeout: float | None = None) -> bool:
    """``event.wait(timeout)`` through ``wait_for`` (see there)."""
    return wait_for(event.wait, timeout)
