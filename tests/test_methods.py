"""Decorated methods at run time: instance, static and class methods, with the
decorator above or below ``@staticmethod``/``@classmethod``, called, mapped,
run ``.sync`` and through ``Pool.submit``/``Pool.map``, with and without a pool.

The typing side of the same methods is in tests/typing/good_api.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

from nestpool import Pool

from .method_tasks import Counter, SubCounter

pytestmark = pytest.mark.timeout(60)


def _values(pairs: Any) -> list[int]:
    return [value for value, _pid in pairs]


def _amap_values(iterator: Any) -> list[Any]:
    async def consume() -> list[Any]:
        return [value async for value in iterator]

    return asyncio.run(consume())


# (expression producing the decorated callable, its value for x=1, mapped over [1, 2])
PROCESS_METHODS: list[tuple[str, Callable[[], Any], list[int]]] = [
    ("instance", lambda: Counter(10).add, [11, 12]),
    ("static_above via class", lambda: Counter.static_above, [2, 3]),
    ("static_above via instance", lambda: Counter(0).static_above, [2, 3]),
    ("static_below via class", lambda: Counter.static_below, [3, 4]),
    ("static_below via instance", lambda: Counter(0).static_below, [3, 4]),
    ("class_above via class", lambda: Counter.class_above, [101, 102]),
    ("class_above via instance", lambda: Counter(0).class_above, [101, 102]),
    ("class_above via subclass", lambda: SubCounter.class_above, [201, 202]),
    ("class_below via class", lambda: Counter.class_below, [101, 102]),
    ("class_below via instance", lambda: Counter(0).class_below, [101, 102]),
    ("class_below via subclass", lambda: SubCounter.class_below, [201, 202]),
    ("class_below via subclass instance", lambda: SubCounter(0).class_below, [201, 202]),
]
IDS = [name for name, _, _ in PROCESS_METHODS]


def _binds_helpers(name: str) -> bool:
    # Python 3.13 removed classmethod's chaining of __get__: @classmethod over
    # a decorated function gives a plain bound method, whose .map, .amap and
    # .sync are the function's own, without cls (docs/typing.md: put the
    # decorator over @classmethod). Calls and Pool.submit/map still bind cls.
    return not (name.startswith("class_above") and sys.version_info >= (3, 13))


def _check_process_method(method: Any, expected: list[int], worker: bool, name: str) -> None:
    value, pid = method(1).result()
    assert value == expected[0]
    assert (pid != os.getpid()) is worker
    if not _binds_helpers(name):
        return
    assert _values(method.map([1, 2])) == expected
    assert _values(method.map([1, 2], ordered=False, chunksize=2)) == expected
    assert _values(_amap_values(method.amap([1, 2]))) == expected
    assert method.sync(1)[0] == expected[0]
    assert method.sync(1)[1] == os.getpid()


@pytest.mark.parametrize(("name", "get", "expected"), PROCESS_METHODS, ids=IDS)
def test_process_task_methods_without_a_pool(
    name: str, get: Callable[[], Any], expected: list[int]
) -> None:
    _check_process_method(get(), expected, worker=False, name=name)


@pytest.mark.parametrize(("name", "get", "expected"), PROCESS_METHODS, ids=IDS)
def test_process_task_methods_in_a_worker(
    name: str, get: Callable[[], Any], expected: list[int]
) -> None:
    with Pool(processes=1, threads=2, start_method="spawn") as pool:
        method = get()
        _check_process_method(method, expected, worker=True, name=name)
        value, pid = pool.submit(method, 1).result()
        assert value == expected[0] and pid != os.getpid()
        assert _values(pool.map(method, [1, 2])) == expected


SUBTASK_METHODS: list[tuple[str, Callable[[], Any], list[int]]] = [
    ("instance", lambda: Counter(10).sub_add, [11, 12]),
    ("class_below via class", lambda: Counter.sub_class_below, [101, 102]),
    ("class_below via instance", lambda: Counter(0).sub_class_below, [101, 102]),
    ("class_below via subclass", lambda: SubCounter.sub_class_below, [201, 202]),
]


@pytest.mark.parametrize("pool", [False, True], ids=["no pool", "pool"])
@pytest.mark.parametrize(
    ("name", "get", "expected"), SUBTASK_METHODS, ids=[n for n, _, _ in SUBTASK_METHODS]
)
def test_thread_subtask_methods(
    name: str, get: Callable[[], Any], expected: list[int], pool: bool
) -> None:
    opened = Pool(processes=0, threads=2) if pool else None
    try:
        method = get()
        assert method(1).result() == expected[0]
        assert list(method.map([1, 2])) == expected
        assert sorted(method.map([1, 2], ordered=False)) == expected
        assert _amap_values(method.amap([1, 2])) == expected
        assert method.sync(1) == expected[0]
    finally:
        if opened is not None:
            opened.shutdown()
