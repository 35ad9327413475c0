"""Waiting never deadlocks: a nestpool thread that waits on a subtask nobody
has started runs it itself, in every way of waiting (``result``,
``exception``, ``gather``, ``wait``, ``as_completed``, ``map``), with
``threads=1`` and deep nesting, in the parent and inside workers.

Each test has a short timeout: a deadlock fails fast instead of hanging.
"""

from __future__ import annotations

import threading

import pytest

from nestpool import Pool, gather

from . import collate_tasks as ct
from .collate_tasks import STYLES, Control

pytestmark = pytest.mark.timeout(30)

DEPTH = 50


@pytest.mark.parametrize("style", STYLES)
def test_fifty_deep_with_one_thread_in_the_parent(style: str) -> None:
    # The main thread is not a helper: it waits, and the one pool thread runs
    # the outer subtask, which waits on the next level, and so on.
    with Pool(processes=1, threads=1) as pool:
        assert ct.nest(DEPTH, style).result() == DEPTH
        subtasks = pool.subtask_pool()
        assert subtasks is not None
        assert len(subtasks.thread_idents()) == 1


def test_fifty_deep_with_one_thread_inside_a_worker(start_method: str) -> None:
    with Pool(processes=1, threads=1, start_method=start_method):
        assert ct.nest_in_worker(DEPTH, STYLES).result() == dict.fromkeys(STYLES, DEPTH)


def test_a_subtask_that_maps_over_a_hundred_subtasks_with_two_threads(start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method):
        assert ct.fan(100).result() == sum(range(100))
        assert list(ct.fan.map([100] * 3, ordered=False)) == [sum(range(100))] * 3
        assert ct.fan_in_worker(100).result() == (sum(range(100)), 2 * sum(range(100)))


def test_four_process_tasks_of_one_worker_all_wait_on_subtasks_with_one_thread(
    start_method: str,
) -> None:
    # tasks_per_process=4, threads=1: four runner threads of one worker wait
    # on subtasks at the same time (they meet at a barrier first), and one
    # pool thread is all there is.
    styles = STYLES + STYLES[: -len(STYLES) % 4]  # whole rounds of four
    assert len(styles) % 4 == 0
    with Pool(processes=1, threads=1, tasks_per_process=4, start_method=start_method):
        values = gather([ct.four_at_once(style, 10) for style in styles])
        assert values == [10] * len(styles)
        assert list(ct.four_at_once.map(["gather"] * 4, [5] * 4, chunksize=1)) == [5] * 4


@pytest.mark.parametrize("style", ["wait_first_completed", "as_completed", "as_completed_timeout"])
def test_waiting_on_a_running_and_an_unstarted_subtask(style: str) -> None:
    # threads=2: one pool thread is busy in `blocker` (it waits for the gate,
    # which opens only after the wait below returns); the other runs
    # `wait_on_mix`, which waits on the blocker and on a subtask queued behind
    # it that no thread can take. It must run that one itself.
    control = Control(1)
    with Pool(processes=1, threads=2):
        try:
            control.futures.append(ct.blocker(control))
            got = ct.wait_on_mix(control, style).result()
        finally:
            control.gate.set()
        assert got == ["queued"]
        assert control.futures[0].result() == "blocker"


def test_a_subtask_waits_on_one_queued_behind_it_with_one_thread() -> None:
    # The main thread queues A, then B, on a pool of one thread; A waits on B,
    # which sits in the queue behind A: the pool thread runs B inside A's wait.
    with Pool(processes=1, threads=1):
        holder: list[object] = []
        ready = threading.Event()

        @ct.thread_subtask
        def first() -> str:
            if not ready.wait(ct.GATE_SECONDS):
                raise TimeoutError("B was never queued")
            (second_future,) = holder
            return "A+" + second_future.result()  # type: ignore[attr-defined]

        a = first()
        holder.append(ct.named("B"))
        ready.set()
        assert a.result() == "A+B"
        assert holder[0].result() == "B"  # type: ignore[attr-defined]


def test_the_main_thread_does_not_run_subtasks_itself() -> None:
    # Outside the pool's threads, waiting just waits: the subtask runs on the
    # pool (the routing table), and the one pool thread helps itself.
    with Pool(processes=1, threads=1) as pool:
        main = threading.get_ident()
        values = list(ct.sub_ident.map(range(20)))
        assert [x for x, _ in values] == list(range(20))
        subtasks = pool.subtask_pool()
        assert subtasks is not None
        assert {ident for _, ident in values} <= subtasks.thread_idents()
        assert main not in {ident for _, ident in values}
        assert ct.nest(5, "gather").result() == 5
