"""``progress=`` on ``task.map`` and ``Pool.map``: a tqdm bar, or a callable."""

from __future__ import annotations

import sys

import pytest

from nestpool import Pool

from .ux_helpers import Scaler, cube, triple

pytestmark = pytest.mark.timeout(60)


def test_tqdm_bar_without_a_pool_counts_every_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(cube.map(range(7), progress=True)) == [x**3 for x in range(7)]
    err = capsys.readouterr().err
    assert "7/7" in err
    assert "cube" in err  # the bar is labelled with the task's name


def test_tqdm_bar_on_a_process_task_map(
    start_method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Pool(processes=2, start_method=start_method):
        values = list(cube.map(range(40), progress=True))
    assert values == [x**3 for x in range(40)]
    assert "40/40" in capsys.readouterr().err


def test_tqdm_bar_on_pool_map(capsys: pytest.CaptureFixture[str]) -> None:
    with Pool(processes=1) as pool:
        assert list(pool.map(abs, [-1, -2, -3], progress=True)) == [1, 2, 3]
    err = capsys.readouterr().err
    assert "3/3" in err
    assert "abs" in err


def test_tqdm_bar_on_a_subtask_map(capsys: pytest.CaptureFixture[str]) -> None:
    with Pool(processes=1, threads=2):
        assert list(triple.map(range(5), progress=True)) == [0, 3, 6, 9, 12]
    assert "5/5" in capsys.readouterr().err


def test_input_without_a_length_counts_without_a_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = list(cube.map((x for x in range(4)), progress=True))
    assert values == [0, 1, 8, 27]
    err = capsys.readouterr().err
    assert "4item" in err
    assert "/4" not in err


def test_a_callable_receives_the_running_count(start_method: str) -> None:
    seen: list[int] = []
    with Pool(processes=2, start_method=start_method) as pool:
        assert sum(cube.map(range(10), progress=seen.append)) == sum(x**3 for x in range(10))
        assert seen == list(range(1, 11))
        seen.clear()
        assert list(pool.map(abs, [-4, -5], progress=seen.append)) == [4, 5]
        assert seen == [1, 2]
        seen.clear()
        assert list(triple.map(range(3), ordered=False, progress=seen.append)) != []
        assert seen == [1, 2, 3]


def test_progress_false_or_none_reports_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(cube.map([2], progress=False)) == [8]
    assert list(cube.map([2], progress=None)) == [8]
    assert capsys.readouterr().err == ""


def test_without_tqdm_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # "import tqdm" now fails
    ran: list[int] = []
    with pytest.raises(ImportError, match=r"pip install 'nestpool\[progress\]'"):
        cube.map(map(ran.append, [1]), progress=True)
    with Pool(processes=1) as pool, pytest.raises(ImportError, match=r"nestpool\[progress\]"):
        pool.map(abs, [1], progress=True)
    with pytest.raises(ImportError, match=r"nestpool\[progress\]"):
        triple.map([1], progress=True)
    with pytest.raises(ImportError, match=r"nestpool\[progress\]"):
        cube.amap(map(ran.append, [1]), progress=True)
    assert ran == []  # raised at the call, before any input was taken


def test_a_callable_still_works_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    seen: list[int] = []
    assert list(cube.map([1, 2], progress=seen.append)) == [1, 8]
    assert seen == [1, 2]


def test_a_wrong_progress_value_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="progress must be"):
        cube.map([1], progress="yes")  # type: ignore[arg-type]


def test_closing_the_iterator_closes_the_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with Pool(processes=1):
        with cube.map(range(100), progress=True) as values:  # type: ignore[attr-defined]
            assert next(values) == 0
        assert "1/100" in capsys.readouterr().err


def test_bound_methods_report_progress_too() -> None:
    seen: list[int] = []
    scaler = Scaler(3)
    with Pool(processes=1, threads=2):
        assert list(scaler.scale.map([1, 2], progress=seen.append)) == [3, 6]
        assert list(scaler.shift.map([1, 2], progress=seen.append)) == [4, 5]
    assert seen == [1, 2, 1, 2]


def test_tqdm_bar_on_amap(capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    async def main() -> list[int]:
        with Pool(processes=1, threads=2):
            cubes = [v async for v in cube.amap(range(6), progress=True)]
            triples = [v async for v in triple.amap(range(3), progress=True)]
        return cubes + triples

    assert asyncio.run(main()) == [x**3 for x in range(6)] + [0, 3, 6]
    err = capsys.readouterr().err
    assert "6/6" in err and "cube" in err
    assert "3/3" in err and "triple" in err
