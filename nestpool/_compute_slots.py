"""Compute slots: at most ``cores`` worker processes run their own code at once.

What it owns: the worker-side half of a pool's compute slots, that is, this
process's use of the pool's shared semaphore, the per-thread state of the
threads that run process tasks, and ``IN_NESTPOOL``, the bracket around a
nestpool wait that decides when such a thread queues for a slot. The parent
side (making the semaphore, giving back the slot of a worker that died) is the
dispatcher's.

A pool with more process tasks at once than cores (processes=3 x cores, the
shape that overlaps IO with CPU) shares one semaphore of ``cores`` compute
slots between its workers. A task thread that comes back from waiting on its
subtasks (or from running them itself) after more than ``GRACE_SECONDS``
queues for a slot before it goes on with its own code; it gives the slot up
when it blocks on its subtasks again for more than ``GRACE_SECONDS``
(``wait_for``), and when the task ends. So CPU phases start in the order their
IO finished, at most ``cores`` at once, each at full speed. Without slots they
all share the cores fairly, end together and wait on IO together again: a
convoy that keeps the cores idle while every task waits. A task that never
waits on subtasks never takes a slot. The wait for a slot is bounded
(``MAX_QUEUE_SECONDS``): a slot holder blocked on something else (a barrier
with other tasks, a lock) delays the others by at most that much, never
deadlocks them.

It must never wait for a slot without a bound, and never import another
nestpool module: the waiting primitives, the futures and the worker build on it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = [
    "GRACE_SECONDS",
    "IN_NESTPOOL",
    "MAX_QUEUE_SECONDS",
    "enter_task_thread",
    "give_up",
    "holds_one",
    "task_ended",
    "use_compute_slots",
]

#: a task thread blocked on its subtasks this long gives its slot up; one that
#: spent this long waiting on (or running) subtasks queues for a slot
GRACE_SECONDS = 0.002
#: the longest a task thread queues for a slot before it goes on without one
MAX_QUEUE_SECONDS = 0.25

#: The pool's semaphore of compute slots, in a worker that has one (else None).
#: Set once, by ``use_compute_slots``, after other modules imported this one:
#: they read it as ``_compute_slots.semaphore``, never import the name.
semaphore: Any = None
#: Slots are taken per process: the task threads of one worker share one (the
#: GIL lets one of them compute at a time anyway, and a second slot for the
#: same process would keep a core idle). How many of this process's task
#: threads use the slot it holds (it holds one while this is above 0).
_users = 0
_users_lock = threading.Lock()


class _TaskThread(threading.local):
    """Per thread: is it a worker's task runner, does it use the slot."""

    active = False  # a task runner of a worker with compute slots
    holding = False  # uses this process's slot
    depth = 0  # nested nestpool waits
    entered = 0.0  # when the outermost one began
    marks: Any = None  # the worker's shared array of runner marks...
    held_mark = 0  # ...and the index of its "this process holds a slot" mark


_task_thread = _TaskThread()


def use_compute_slots(pool_semaphore: Any) -> None:
    """Install the pool's semaphore of compute slots in this worker process."""
    global semaphore
    semaphore = pool_semaphore


def enter_task_thread(marks: Any, held_mark: int) -> None:
    """Mark the calling thread as a task runner; ``marks[held_mark]`` says to
    the parent whether this process holds a slot (so a worker's death gives
    the slot back)."""
    state = _task_thread
    state.active = semaphore is not None
    state.marks = marks
    state.held_mark = held_mark


def task_ended() -> None:
    """The runner's task ended: give its slot back."""
    if _task_thread.holding:
        give_up()


def holds_one() -> bool:
    """True when the calling thread uses this process's compute slot."""
    return semaphore is not None and _task_thread.holding


def _take() -> None:
    global _users
    state = _task_thread
    with _users_lock:
        if _users:
            # Another task of this process holds the slot: share it.
            _users += 1
            state.holding = True
            return
    if not semaphore.acquire(True, MAX_QUEUE_SECONDS):
        return  # waited long enough: go on without one (never deadlock)
    with _users_lock:
        _users += 1
        if _users > 1:
            # Another task of this process got one meanwhile: keep only one.
            semaphore.release()
        else:
            state.marks[state.held_mark] = 1
    state.holding = True


def give_up() -> None:
    """The calling thread stops using this process's slot (it holds one); the
    last user gives it back to the pool."""
    global _users
    state = _task_thread
    state.holding = False
    with _users_lock:
        _users -= 1
        if not _users:
            semaphore.release()
            # After the release: a death in between leaves the mark set, and
            # the parent then gives back a slot too many (harmless), never
            # one too few.
            state.marks[state.held_mark] = 0


class _InNestpool:
    """``with IN_NESTPOOL:`` around a nestpool wait, or a subtask run by the
    waiting thread: on leaving the outermost one after more than
    ``GRACE_SECONDS``, a task thread without a slot queues for one."""

    __slots__ = ()

    def __enter__(self) -> None:
        state = _task_thread
        if state.active:
            if not state.depth:
                state.entered = time.monotonic()
            state.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        state = _task_thread
        if state.active:
            state.depth -= 1
            if (
                not state.depth
                and not state.holding
                and time.monotonic() - state.entered > GRACE_SECONDS
            ):
                _take()


IN_NESTPOOL = _InNestpool()
