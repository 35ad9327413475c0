"""The dispatcher's self-pipe never loses a wake-up.

A lost wake-up leaves the dispatcher asleep with work in its inbox: a pool
that is otherwise idle then hangs for good. A submitter puts its work in the
inbox, then writes a byte if ``_Wakeup.sleeping`` is set and no byte was
written in this sleep yet; the dispatcher starts a sleep (``sleep_begins``),
then looks at its inbox once more before it blocks (and not at all if it finds
work there). A Ctrl-C inside ``wake()`` must leave nothing behind that makes a
later ``wake()`` skip its write.
"""

from __future__ import annotations

import operator
import os
import queue
import random
import select
import threading
import time

import pytest

from nestpool import Pool, _dispatcher
from nestpool._dispatcher import _Wakeup
from nestpool._waiting import OneShotEvent

pytestmark = pytest.mark.timeout(60)


def _readable(wakeup: _Wakeup, timeout: float = 0.0) -> bool:
    ready, _, _ = select.select([wakeup.reader], [], [], timeout)
    return bool(ready)


def test_a_wake_while_the_dispatcher_sleeps_is_seen() -> None:
    wakeup = _Wakeup()
    try:
        wakeup.wake()  # the dispatcher is busy: it reads its inbox anyway
        assert not _readable(wakeup)
        wakeup.sleep_begins()
        wakeup.wake()
        wakeup.wake()  # one byte per sleep is enough
        assert _readable(wakeup)
        assert os.read(wakeup.reader, 16) == b"\0"
        wakeup.sleeping = False  # it woke up
        wakeup.wake()
        assert not _readable(wakeup)
        wakeup.sleep_begins()  # its next sleep
        wakeup.wake()
        assert _readable(wakeup)
    finally:
        wakeup.close()


def test_an_interrupted_wake_leaves_no_stale_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C lands inside wake(), in the write: the next wake() must still
    # write, or the dispatcher never hears of the pool's terminate.
    wakeup = _Wakeup()
    wakeup.sleep_begins()
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


def test_no_wake_is_lost_between_submitters_and_the_dispatcher_loop() -> None:
    # The dispatcher's side of the protocol (Dispatcher._wait_and_collect)
    # against submitters that put and wake at every moment of its turn: every
    # item arrives, and the loop never sleeps with work in its inbox (no
    # timeout on its wait: a lost wake-up hangs it, and the test fails).
    wakeup = _Wakeup()
    inbox: queue.SimpleQueue[int] = queue.SimpleQueue()
    count, producers = 3000, 3
    received: list[int] = []
    done = threading.Event()
    stuck: list[str] = []

    def dispatcher() -> None:
        poll = select.poll()
        poll.register(wakeup.reader, select.POLLIN)
        while len(received) < count * producers:
            while True:
                try:
                    received.append(inbox.get_nowait())
                except queue.Empty:
                    break
            if len(received) >= count * producers:
                break
            wakeup.sleep_begins()
            timeout = 0 if not inbox.empty() else 10_000
            try:
                ready = poll.poll(timeout)
            finally:
                wakeup.sleeping = False
            if timeout and not ready:
                stuck.append("slept with work in the inbox")
                return
            if ready:
                wakeup.clear()
        done.set()

    def produce(seed: int) -> None:
        rng = random.Random(seed)
        for item in range(count):
            inbox.put(item)
            wakeup.wake()
            if rng.random() < 0.05:
                time.sleep(rng.random() * 1e-4)

    thread = threading.Thread(target=dispatcher)
    thread.start()
    submitters = [threading.Thread(target=produce, args=(seed,)) for seed in range(producers)]
    for submitter in submitters:
        submitter.start()
    for submitter in submitters:
        submitter.join(30)
    assert done.wait(30), stuck or "the dispatcher loop hangs: a wake-up was lost"
    thread.join(5)
    wakeup.close()
    assert sorted(received) == sorted(list(range(count)) * producers)


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


def test_no_wake_is_lost_by_the_real_dispatcher() -> None:
    # The same race on a real pool: submitters in several threads, each
    # waiting for its result before the next submit, so the dispatcher keeps
    # going to sleep between tasks. A lost wake-up leaves a result missing.
    errors: list[BaseException] = []

    def submitter(pool: Pool, seed: int) -> None:
        try:
            for i in range(400):
                assert pool.submit(operator.add, i, seed).result(timeout=20) == i + seed
        except BaseException as exc:
            errors.append(exc)

    with Pool(processes=2, start_method="fork") as pool:
        threads = [threading.Thread(target=submitter, args=(pool, s)) for s in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(50)
    assert not errors, errors[:1]
