"""The dispatcher's task life cycle: every change goes through Task.move and its
table of allowed transitions."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from nestpool._records import ALLOWED_TRANSITIONS, Task, TaskState


def _task() -> Task:
    return Task(1, "t", b"", b"", Future(), None, None)


@pytest.mark.parametrize(
    "path",
    [
        [TaskState.SENT, TaskState.RUNNING, TaskState.DONE],
        [TaskState.DONE],  # cancelled before dispatch
        [TaskState.SENT, TaskState.PENDING, TaskState.SENT, TaskState.RUNNING, TaskState.DONE],
        [TaskState.SENT, TaskState.RUNNING, TaskState.PENDING, TaskState.SENT],  # chunk rerun
    ],
)
def test_allowed_paths(path: list[TaskState]) -> None:
    task = _task()
    for state in path:
        task.move(state)
    assert task.state is path[-1]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (TaskState.PENDING, TaskState.RUNNING),  # must be sent first
        (TaskState.DONE, TaskState.PENDING),  # a resolved task never comes back
        (TaskState.DONE, TaskState.RUNNING),
        (TaskState.RUNNING, TaskState.SENT),
    ],
)
def test_forbidden_transitions_are_refused(before: TaskState, after: TaskState) -> None:
    task = _task()
    task.state = before
    with pytest.raises(AssertionError, match="not allowed"):
        task.move(after)


def test_done_is_final() -> None:
    assert ALLOWED_TRANSITIONS[TaskState.DONE] == frozenset()
