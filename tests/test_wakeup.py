"""The dispatcher's self-pipe never loses a wake-up.

A lost wake-up leaves the dispatcher asleep with work in its inbox: a pool
that is otherwise idle then hangs for good. One is lost when
``_Wakeup.pending`` is left True over an empty pipe (by a Ctrl-C inside
``wake()``, or by a ``clear()`` racing a ``wake()``): every later ``wake()``
then skips its write.
"""

from __future__ import annotations

import queue
import select
import threading

import pytest

from nestpool import _dispatcher
from nestpool._dispatcher import _Wakeup
from nestpool._waiting import OneShotEvent

pytestmark = pytest.mark.timeout(60)


def _readable(wakeup: _Wakeup, timeout: float = 0.0) -> bool:
    ready, _, _ = select.select([wakeup.reader], [], [], timeout)
    return bool(ready)


def test_a_wake_after_a_clear_is_always_seen() -> None:
    wakeup = _Wakeup()
    try:
        wakeup.wake()
        wakeup.wake()  # a byte is waiting: no second write needed
        assert _readable(wakeup)
        wakeup.clear()
        assert not _readable(wakeup)
        wakeup.wake()
        assert _readable(wakeup)
    finally:
        wakeup.close()


def test_an_interrupted_wake_leaves_no_stale_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C lands inside wake(), around the write: the next wake() must still
    # write, or the dispatcher never hears of the pool's terminate.
    wakeup = _Wakeup()
    real_write = _dispatcher.os.write

    def interrupted(fd: int, data: bytes) -> int:
        raise KeyboardInterrupt

    try:
        monkeypatch.setattr(_dispatcher.os, "write", interrupted)
        with pytest.raises(KeyboardInterrupt):
            wakeup.wake()
        monkeypatch.setattr(_dispatcher.os, "write", real_write)
        wakeup.wake()
        assert _readable(wakeup)
    finally:
        wakeup.close()


def test_a_wake_racing_with_clear_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # The interleaving that would lose a wake-up if clear() reset the flag
    # before draining the pipe, made to happen every run: a
    # producer puts work and wakes exactly while the dispatcher's clear() is
    # about to drain the pipe. Afterwards the dispatcher reads its inbox (and
    # finds that work), then sleeps; the *next* producer's wake must reach it.
    wakeup = _Wakeup()
    inbox: queue.SimpleQueue[int] = queue.SimpleQueue()
    real_read = _dispatcher.os.read
    raced = False

    def produce(item: int) -> None:
        inbox.put(item)
        wakeup.wake()

    def read_after_a_racing_wake(fd: int, size: int) -> bytes:
        nonlocal raced
        if not raced:
            raced = True
            producer = threading.Thread(target=produce, args=(1,))
            producer.start()
            # The producer may wait for clear()'s lock (wake() takes it too):
            # do not wait for it here (that would deadlock), only give it time.
            producer.join(0.2)
        return real_read(fd, size)

    try:
        wakeup.wake()  # a byte is waiting, as after any submit
        monkeypatch.setattr(_dispatcher.os, "read", read_after_a_racing_wake)
        wakeup.clear()
        monkeypatch.setattr(_dispatcher.os, "read", real_read)
        assert raced
        # The dispatcher's loop: clear, then take the inbox...
        assert inbox.get(timeout=5) == 1
        # ...then a byte may still be waiting (harmless: one extra turn)...
        if _readable(wakeup):
            wakeup.clear()
        # ...then it sleeps on the pipe. New work must wake it.
        produce(2)
        assert _readable(wakeup, 5.0), "the wake-up for new work was lost"
    finally:
        monkeypatch.setattr(_dispatcher.os, "read", real_read)
        wakeup.close()


# ---------------------------------------------------------------- OneShotEvent


def test_a_one_shot_event_wakes_every_waiter_and_stays_set() -> None:
    event = OneShotEvent()
    assert not event.is_set()
    assert event.wait(0.01) is False
    started = threading.Barrier(5, timeout=10)
    woke: list[bool] = []
    lock = threading.Lock()

    def waiter() -> None:
        started.wait()
        result = event.wait()  # no timeout: woken by set()
        with lock:
            woke.append(result)

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    event.set()
    event.set()  # twice is harmless
    for thread in threads:
        thread.join(10)
    assert woke == [True] * 4
    assert event.is_set() and event.wait(0) and event.wait()


def test_a_one_shot_event_wait_whose_gate_was_kept_still_returns() -> None:
    # A waiter interrupted between taking the gate and passing it on keeps it;
    # the others still see the flag within a slice.
    event = OneShotEvent()
    event.set()
    assert event._gate.acquire(False)  # as an interrupted waiter would leave it
    event._flag = False
    done = threading.Event()

    def waiter() -> None:
        event.wait(5)
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    event._flag = True  # set, but the gate stays taken
    assert done.wait(5)
    thread.join(5)
