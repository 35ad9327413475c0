"""Misuses of nestpool's public API: each must be a type error.

Every misuse sits on one line that ends with ``# type: ignore[code]``, the
error code mypy must report there. tests/test_typing.py checks it twice: with
the comments, ``mypy --strict --warn-unused-ignores`` must be clean (a misuse
that is not flagged leaves an unused ignore); without them, mypy must report
exactly those codes on exactly those lines. pyright (strict, with unnecessary
ignores reported) must flag each of these lines too. This file is never run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from typing import Any

import nestpool
from nestpool import (
    AsyncMapIterator,
    MapIterator,
    Pool,
    gather,
    per_worker,
    process_task,
    thread_subtask,
)


@process_task
def crunch(words: list[str], scale: int = 1) -> int:
    return len(words) * scale


@process_task(timeout=1.0, name="halve")
def halve(x: int) -> float:
    return x / 2


@thread_subtask
def fetch(url: str) -> bytes:
    return url.encode()


@thread_subtask(name="lookup")
def lookup(key: str, *, default: int = 0) -> int:
    return len(key) + default


class Scorer:
    @process_task
    def score(self, word: str) -> int:
        return len(word)


@thread_subtask
async def fetch_async(url: str) -> bytes:
    return url.encode()


def wrong_async_subtasks(words: list[str]) -> None:
    fetch_async(b"url")  # type: ignore[arg-type]
    fetch_async("u", "v")  # type: ignore[call-arg]
    fetch_async.sync(3)  # type: ignore[arg-type]
    fetch_async.map([b"u"])  # type: ignore[list-item]
    fetch_async.amap([1])  # type: ignore[list-item]
    # the future holds what the coroutine returns, not the coroutine
    coro: Future[Coroutine[Any, Any, bytes]] = fetch_async("u")  # type: ignore[assignment]
    text: str = fetch_async("u").result()  # type: ignore[assignment]
    plain: str = fetch_async.sync("u")  # type: ignore[assignment]
    texts: MapIterator[str] = fetch_async.map(words)  # type: ignore[assignment]
    del coro, text, plain, texts


def plain_pow(base: int, exponent: int) -> int:
    return int(base**exponent)


def wrong_arguments() -> None:
    crunch(3)  # type: ignore[arg-type]
    crunch([1, 2])  # type: ignore[list-item]
    crunch()  # type: ignore[call-arg]
    crunch(["a"], 2, 3)  # type: ignore[call-arg]
    crunch(["a"], scal=2)  # type: ignore[call-arg]
    crunch(["a"], scale="2")  # type: ignore[arg-type]
    halve("3")  # type: ignore[arg-type]
    halve(x=1, y=2)  # type: ignore[call-arg]
    fetch(b"url")  # type: ignore[arg-type]
    fetch()  # type: ignore[call-arg]
    lookup("k", 1)  # type: ignore[call-arg]
    lookup("k", default="1")  # type: ignore[arg-type]
    crunch.sync(3)  # type: ignore[arg-type]
    fetch.sync("u", "v")  # type: ignore[call-arg]
    crunch.__wrapped__(3)  # type: ignore[arg-type]


def wrong_methods() -> None:
    scorer = Scorer()
    scorer.score(1)  # type: ignore[arg-type]
    scorer.score("a", "b")  # type: ignore[call-arg]
    scorer.score.sync(1)  # type: ignore[arg-type]
    Scorer.score("a")  # type: ignore[arg-type, call-arg]


def wrong_results() -> None:
    as_text: str = crunch(["a"])  # type: ignore[assignment]
    crunch(["a"]).upper()  # type: ignore[attr-defined]
    crunch(["a"]).result().upper()  # type: ignore[attr-defined]
    value: str = crunch(["a"]).result()  # type: ignore[assignment]
    plain: int = halve.sync(1)  # type: ignore[assignment]
    future: Future[str] = fetch("u")  # type: ignore[assignment]
    texts: list[str] = list(crunch.map([["a"]]))  # type: ignore[arg-type]
    crunch.map([["a"]])[0]  # type: ignore[index]
    len(halve.map([1]))  # type: ignore[arg-type]
    floats: Iterator[str] = halve.map([1])  # type: ignore[assignment]
    crunch.map([["a"]], ordered="yes")  # type: ignore[call-overload]
    gathered: list[str] = gather([crunch(["a"])])  # type: ignore[assignment]
    only_ints: list[int] = gather([crunch(["a"]), fetch("u")])  # type: ignore[assignment]
    gather([crunch(["a"]), 2])  # type: ignore[arg-type]
    gather([asyncio.Future[int]()])  # type: ignore[arg-type]
    gather([crunch(["a"])], return_exceptions=True)[0] + 1  # type: ignore[operator]
    gather([1, 2])  # type: ignore[arg-type]
    del as_text, value, plain, future, texts, floats, gathered, only_ints


def wrong_map_items(words: list[str], numbers: list[int]) -> None:
    # Each iterable's items are checked against the parameter they feed.
    crunch.map([1, 2])  # type: ignore[list-item]
    crunch.map(words)  # type: ignore[arg-type]
    crunch.map([["a"]], ["2"])  # type: ignore[list-item]
    crunch.map([["a"]], words)  # type: ignore[arg-type]
    halve.map(words)  # type: ignore[arg-type]
    halve.map(numbers, numbers)  # type: ignore[call-overload]
    fetch.map([b"u"])  # type: ignore[list-item]
    lookup.map(words, numbers)  # type: ignore[call-overload]
    Scorer().score.map(numbers)  # type: ignore[arg-type]
    halve.amap(words)  # type: ignore[arg-type]
    crunch.amap([["a"]], words)  # type: ignore[arg-type]
    fetch.amap(numbers)  # type: ignore[arg-type]


async def wrong_stopping(pool: Pool) -> None:
    # .map's iterator is closed synchronously, .amap's asynchronously.
    crunch.map([["a"]]).aclose()  # type: ignore[attr-defined]
    crunch.amap([["a"]]).close()  # type: ignore[attr-defined]
    halve.map([1]).close(True)  # type: ignore[call-arg]
    texts: MapIterator[str] = crunch.map([["a"]])  # type: ignore[assignment]
    not_a_map: MapIterator[int] = iter([1])  # type: ignore[assignment]
    floats: AsyncMapIterator[str] = halve.amap([1])  # type: ignore[assignment]
    MapIterator[int]()  # type: ignore[abstract]
    await crunch.map([["a"]]).__anext__()  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(pool, crunch.sync, 3)  # type: ignore[arg-type]
    del texts, not_a_map, floats


def wrong_decoration() -> None:
    process_task(3)  # type: ignore[call-overload]
    thread_subtask("fetch")  # type: ignore[call-overload]
    process_task(timeout="1")  # type: ignore[call-overload]
    process_task(timeot=1.0)  # type: ignore[call-overload]
    thread_subtask(timeout=1.0)  # type: ignore[call-overload]
    thread_subtask(retries=1)  # type: ignore[call-overload]
    process_task(retries="3")  # type: ignore[call-overload]
    thread_subtask(name=3)  # type: ignore[call-overload]
    process_task(name="x")(None)  # type: ignore[arg-type]


def wrong_options() -> None:
    crunch.options(timeot=1)  # type: ignore[call-arg]
    crunch.options(retries="2")  # type: ignore[arg-type]
    crunch.options(timeout=1)(3)  # type: ignore[arg-type]
    texts: Future[str] = halve.options(retries=1)(1)  # type: ignore[assignment]
    fetch.options(timeout=1)  # type: ignore[attr-defined]
    crunch.options(stop_on_cancel="yes")  # type: ignore[arg-type]
    fetch.options(stop_on_cancel=True)  # type: ignore[attr-defined]
    nestpool.stop(crunch)  # type: ignore[arg-type]
    del texts


def wrong_pool(pool: Pool) -> None:
    pool.submit(plain_pow, 2)  # type: ignore[call-overload]
    pool.submit(plain_pow, 2, "3")  # type: ignore[call-overload]
    pool.submit(crunch, 3)  # type: ignore[call-overload]
    pool.submit(halve, x="1")  # type: ignore[call-overload]
    as_bytes: Future[bytes] = pool.submit(halve, 1)  # type: ignore[call-overload]
    texts: Iterator[str] = pool.map(plain_pow, [1], [2])  # type: ignore[arg-type]
    pool.map(halve, [1], chunksize="2")  # type: ignore[call-overload]
    Pool(processes="4")  # type: ignore[arg-type]
    Pool(4, 8, 2)  # type: ignore[call-arg]
    Pool(max_workers="4")  # type: ignore[arg-type]
    Pool(mp_context="spawn")  # type: ignore[arg-type]
    pool.shutdown(cancel=True)  # type: ignore[call-arg]
    del as_bytes, texts


def needs_an_argument(x: int) -> int:
    return x


def make_list() -> list[int]:
    return []


def wrong_per_worker() -> None:
    per_worker(needs_an_argument)  # type: ignore[arg-type]
    per_worker(scope="module")  # type: ignore[call-overload]
    per_worker(make_list)(1)  # type: ignore[call-arg]
