"""A worker-side exception comes back as itself, with the worker-side traceback
text (thread frames included) attached as ``__cause__``, as the standard
library's ProcessPoolExecutor does it.
"""

from __future__ import annotations

import traceback

import pytest

from nestpool import Pool
from nestpool._serialize import RemoteTraceback
from tests import fault_tasks as ft

pytestmark = pytest.mark.timeout(60)


def _remote_text(error: BaseException) -> str:
    cause = error.__cause__
    assert isinstance(cause, RemoteTraceback), repr(cause)
    return cause.tb


def test_an_exception_arrives_as_itself_with_the_worker_traceback(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method):
        future = ft.raise_kind("value")
        with pytest.raises(ValueError, match=r"^plain failure$") as info:
            future.result(timeout=30)
    error = info.value
    assert type(error) is ValueError
    text = _remote_text(error)
    assert "Traceback (most recent call last)" in text
    assert "in raise_kind" in text
    assert 'raise ValueError("plain failure")' in text
    assert text.rstrip().endswith('ValueError: plain failure\n"""')
    # Printed, the caller's traceback shows both sides.
    printed = "".join(traceback.format_exception(error))
    assert "nestpool._serialize.RemoteTraceback" in printed
    assert "The above exception was the direct cause of the following exception" in printed
    assert printed.index("in raise_kind") < printed.index("future.result(timeout=30)")


def test_a_subtasks_exception_keeps_the_frames_of_its_thread(start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method), pytest.raises(KeyError) as info:
        ft.raise_through_subtask().result(timeout=30)
    error = info.value
    (message,) = error.args
    assert message.startswith("subtask failed on thread ")
    thread_name = message.rsplit(" ", 1)[1]
    assert thread_name.startswith("nestpool"), thread_name  # a pool thread ran it
    text = _remote_text(error)
    # The process task's frames, then the subtask's, from its own thread.
    assert "in raise_through_subtask" in text
    assert "in failing_subtask" in text
    assert text.index("in raise_through_subtask") < text.index("in failing_subtask")
    assert 'raise KeyError(f"subtask failed on thread {name}")' in text


def test_an_exception_chain_survives(start_method: str) -> None:
    with (
        Pool(processes=1, start_method=start_method),
        pytest.raises(ValueError, match="outer failure") as info,
    ):
        ft.raise_kind("chained").result(timeout=30)
    text = _remote_text(info.value)
    assert "KeyError: 'missing-key'" in text
    assert "The above exception was the direct cause of the following exception" in text
    assert text.index("KeyError: 'missing-key'") < text.index("ValueError: outer failure")


def test_extra_attributes_survive_the_round_trip(start_method: str) -> None:
    with Pool(processes=1, start_method=start_method):
        error = ft.raise_kind("rich").exception(timeout=30)
    assert isinstance(error, ft.RichError)
    assert error.args == ("rich failure", 7, {"a": 1})
    assert error.code == 7
    assert error.details == {"a": 1}
    assert error.note == "set in __init__"
    assert error.added_later == "after init"  # type: ignore[attr-defined]
    assert "in raise_kind" in _remote_text(error)


def test_a_process_tasks_exception_inline_keeps_its_own_traceback() -> None:
    # processes=0: the task runs here; the exception is the very object raised,
    # with its real traceback (nothing crossed a process boundary).
    with Pool(processes=0):
        error = ft.raise_kind("value").exception()
    assert isinstance(error, ValueError)
    assert error.__cause__ is None
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert "raise_kind" in frames
