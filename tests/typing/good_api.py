"""Correct uses of nestpool's public API: every result is checked with assert_type.

mypy --strict and pyright (strict) must accept this file as it is
(tests/test_typing.py). Its check_* functions also run, without a pool and
under a Pool, so that each type written here is the value the call really
gives (tests/test_typing.py::test_good_uses_run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import multiprocessing
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from typing_extensions import assert_type

import nestpool
from nestpool import (
    AsyncMapIterator,
    AsyncSubtask,
    MapIterator,
    PerWorker,
    Pool,
    ProcessTask,
    ThreadSubtask,
    gather,
    per_worker,
    process_task,
    thread_subtask,
)

T = TypeVar("T")


@process_task
def crunch(words: list[str], scale: int = 1) -> int:
    """A bare process task with a default argument."""
    return sum(len(word) for word in words) * scale


@process_task(timeout=30.0, name="halve")
def halve(x: int) -> float:
    """A process task with options."""
    return x / 2


@thread_subtask
def fetch(url: str) -> bytes:
    """A bare thread subtask."""
    return url.encode()


@thread_subtask(name="lookup")
def lookup(key: str, *, default: int = 0) -> int:
    """A thread subtask with options and a keyword-only argument."""
    return len(key) + default


@process_task
def first(items: list[T]) -> T:
    """A generic process task: the type variable is solved at each call."""
    return items[0]


@process_task
def joined(*parts: int, sep: str = ",") -> str:
    """Star-arguments and a keyword-only option."""
    return sep.join(str(part) for part in parts)


@process_task
def nested(urls: list[str]) -> int:
    """A process task that fans out to subtasks (inline without a pool)."""
    pages = fetch.map(urls)
    assert_type(pages, MapIterator[bytes])
    futures = [lookup(url, default=1) for url in urls]
    assert_type(futures, list[Future[int]])
    return sum(len(page) for page in pages) + sum(gather(futures))


def plain_pow(base: int, exponent: int) -> int:
    """An undecorated function for Pool.submit and Pool.map."""
    return int(base**exponent)


class Scorer:
    """Decorated methods: through an instance, `self` is bound."""

    def __init__(self, bonus: int) -> None:
        self.bonus = bonus

    @process_task
    def score(self, word: str) -> int:
        return len(word) + self.bonus

    @thread_subtask(name="Scorer.tag")
    def tag(self, word: str) -> str:
        return f"{word}:{self.bonus}"

    @staticmethod
    @process_task
    def static_above(x: int) -> int:
        return x + 1

    @process_task
    @staticmethod
    def static_below(x: int) -> int:
        return x + 2


def check_decorated_objects() -> None:
    """The decorators keep the signature in the type's parameters.

    assert_type compares parameter names too, which a type expression such as
    ProcessTask[[int], float] cannot spell; assignment checks the rest (and
    docs/typing.md shows each revealed type in full).
    """
    task: ProcessTask[[list[str], int], int] = crunch
    with_options: ProcessTask[[int], float] = halve
    subtask: ThreadSubtask[[str], bytes] = fetch
    with_name: ThreadSubtask[..., int] = lookup
    assert task is crunch and with_options is halve
    assert subtask is fetch and with_name is lookup
    assert_type(crunch.task_name, str)
    assert_type(halve.timeout, float | None)
    assert_type(fetch.task_name, str)
    assert_type(crunch.__name__, str)
    assert_type(crunch.__qualname__, str)
    wrapped: Callable[[list[str], int], int] = crunch.__wrapped__
    wrapped_subtask: Callable[[str], bytes] = fetch.__wrapped__
    assert wrapped_subtask("u") == b"u"
    assert_type(crunch.__wrapped__(["ab"]), int)
    assert (halve.task_name, halve.timeout, lookup.task_name) == ("halve", 30.0, "lookup")
    assert crunch.__name__ == "crunch" and wrapped(["ab"], 2) == 4
    # A decorated function is a callable returning a future.
    as_callable: Callable[[int], Future[float]] = halve
    assert as_callable is halve


@process_task(retries=2)
def retried(x: int) -> str:
    return str(x)


def check_options() -> None:
    """retries= and options(): a variant is typed as the original."""
    assert_type(retried.retries, int)
    assert_type(retried(1), Future[str])
    variant: ProcessTask[[int], str] = retried.options(timeout=5.0, retries=3)
    assert (variant.timeout, variant.retries, retried.retries) == (5.0, 3, 2)
    assert_type(halve.options(timeout=1)(3), Future[float])
    assert_type(halve.options(retries=1).map(range(3)), MapIterator[float])
    assert_type(halve.options(timeout=None).sync(3), float)
    assert_type(crunch.options(retries=0)(["ab"], scale=2), Future[int])
    assert list(halve.options(retries=1).map(range(3))) == [0.0, 0.5, 1.0]
    assert halve.options(timeout=1)(3).result() == 1.5
    assert variant.__name__ == "retried"


@process_task(stop_on_cancel=True)
def stoppable(x: int) -> str:
    return str(x)


def check_stop() -> None:
    """stop_on_cancel= and nestpool.stop: typed like the other options."""
    assert_type(stoppable.stop_on_cancel, bool)
    assert_type(stoppable(1), Future[str])
    variant: ProcessTask[[int], float] = halve.options(stop_on_cancel=True)
    assert variant.stop_on_cancel and not halve.stop_on_cancel
    assert_type(nestpool.stop(halve(3)), bool)
    assert_type(nestpool.stop(fetch("u")), bool)


def check_calls() -> None:
    """Calling gives Future[R]; .sync gives R; .map gives MapIterator[R]."""
    assert_type(crunch(["ab", "c"]), Future[int])
    assert_type(crunch(["ab"], scale=2), Future[int])
    assert_type(crunch(words=["ab"]), Future[int])
    assert_type(halve(3), Future[float])
    assert_type(fetch("u"), Future[bytes])
    assert_type(lookup("k", default=2), Future[int])
    assert_type(first([1, 2]), Future[int])
    assert_type(first(["a"]), Future[str])
    assert_type(joined(1, 2, 3, sep="-"), Future[str])
    assert_type(nested(["a", "bb"]), Future[int])
    assert crunch(["ab", "c"]).result() == 3
    assert crunch(["ab"], scale=2).result() == 4
    assert halve(3).result() == 1.5
    assert fetch("u").result() == b"u"
    assert lookup("k", default=2).result() == 3
    assert first(["a"]).result() == "a"
    assert joined(1, 2, 3, sep="-").result() == "1-2-3"
    assert nested(["a", "bb"]).result() == 3 + 5

    assert_type(crunch.sync(["ab"]), int)
    assert_type(halve.sync(1), float)
    assert_type(fetch.sync("u"), bytes)
    assert_type(lookup.sync("k", default=1), int)
    assert crunch.sync(["ab"]) == 2 and fetch.sync("u") == b"u"

    assert_type(crunch.map([["a"], ["bb"]]), MapIterator[int])
    assert_type(crunch.map([["a"]], [3], ordered=False, chunksize=2), MapIterator[int])
    assert_type(halve.map(range(3), buffersize=2), MapIterator[float])
    assert_type(fetch.map(["a", "b"]), MapIterator[bytes])
    assert_type(list(halve.map(range(3))), list[float])
    assert list(crunch.map([["a"], ["bb"]])) == [1, 2]
    assert list(halve.map(range(3), buffersize=2)) == [0.0, 0.5, 1.0]
    assert sorted(fetch.map(["a", "b"], ordered=False)) == [b"a", b"b"]
    # One iterable per positional parameter, each checked (up to five), and
    # unchecked beyond: the result type holds for any number.
    assert_type(lookup.map(["k"], buffersize=4), MapIterator[int])
    assert_type(joined.map([1], [2], [3]), MapIterator[str])
    assert_type(joined.map([1], [2], [3], [4]), MapIterator[str])
    assert_type(joined.map([1], [2], [3], [4], [5]), MapIterator[str])
    assert_type(joined.map([1], [2], [3], [4], [5], [6], [7]), MapIterator[str])
    assert_type(crunch.map(), MapIterator[int])  # no iterables: empty, as Executor.map(fn)
    assert list(crunch.map()) == []
    assert list(lookup.map(["k", "kk"])) == [1, 2]
    assert list(joined.map([1], [2], [3])) == ["1,2,3"]
    assert list(joined.map([1], [2], [3], [4], [5], [6], [7])) == ["1,2,3,4,5,6,7"]

    async def consume() -> tuple[list[float], list[bytes]]:
        halves = halve.amap([1, 2])
        assert_type(halves, AsyncMapIterator[float])
        assert_type(fetch.amap(["u"], ordered=False), AsyncMapIterator[bytes])
        assert_type(crunch.amap([["a"]], [2]), AsyncMapIterator[int])
        return [h async for h in halves], [p async for p in fetch.amap(["u"])]

    assert asyncio.run(consume()) == ([0.5, 1.0], [b"u"])


def check_stopping() -> None:
    """A map can be stopped early, each way the docs teach, and its type named."""
    values: MapIterator[int] = crunch.map([["a"], ["bb"], ["ccc"]])
    assert next(values) == 1
    assert_type(values.close(), None)
    assert list(values) == []
    with halve.map(range(10)) as halves:
        assert_type(halves, MapIterator[float])
        assert next(halves) == 0.0
    assert list(halves) == []
    with contextlib.closing(fetch.map(["u", "v"])) as pages:
        assert_type(pages, MapIterator[bytes])
        assert next(pages) == b"u"
    assert list(pages) == []
    plain: Iterator[int] = crunch.map([["a"]])  # still an Iterator[R]
    assert list(plain) == [1]
    with Scorer(10).score.map(["a", "bb"], progress=lambda done: None) as scores:
        assert_type(scores, MapIterator[int])
        assert list(scores) == [11, 12]

    async def stop_async() -> tuple[float, list[bytes]]:
        halves = halve.amap(range(10))
        annotated: AsyncMapIterator[float] = halves
        first_half = await annotated.__anext__()
        assert_type(await halves.aclose(), None)
        async with fetch.amap(["u", "v"]) as pages:
            assert_type(pages, AsyncMapIterator[bytes])
            fetched = [page async for page in pages]
        return first_half, fetched

    assert asyncio.run(stop_async()) == (0.0, [b"u", b"v"])


def check_results() -> None:
    """What the futures give: gather, result, the standard library's helpers."""
    futures = [crunch([word]) for word in ("a", "bb")]
    assert_type(gather(futures), list[int])
    assert_type(gather(halve(x) for x in range(2)), list[float])
    assert_type(gather(futures, return_exceptions=True), list[int | BaseException])
    assert_type(gather(futures, return_exceptions=False), list[int])
    assert gather(futures) == [1, 2]
    assert gather(futures, return_exceptions=True) == [1, 2]
    # Futures of several types: the values are their union (pyright) or
    # object (mypy joins a list display first); either assigns to these.
    mixed: list[object] = gather([crunch(["ab"]), fetch("u")])
    numbers: list[float] = gather([crunch(["ab"]), halve(3)])
    either: list[int | bytes] = gather((crunch(["ab"]), fetch("u")))
    with_errors: list[object] = gather([halve(1), fetch("u")], return_exceptions=True)
    assert mixed == [2, b"u"] and numbers == [2, 1.5] and either == [2, b"u"]
    assert with_errors == [0.5, b"u"]
    assert_type(futures[0].result(), int)
    assert_type(futures[0].result(timeout=1.0), int)
    done, _pending = concurrent.futures.wait(futures)
    assert_type(done, set[Future[int]])
    for future in concurrent.futures.as_completed(futures):
        assert_type(future, Future[int])
    total: int = sum(future.result() for future in futures)
    assert total == 3

    async def awaited() -> float:
        value = await asyncio.wrap_future(halve(5))
        assert_type(value, float)
        return value

    assert asyncio.run(awaited()) == 2.5


def check_methods() -> None:
    """Through an instance `self` is bound; through the class it is not."""
    scorer = Scorer(10)
    bound: ProcessTask[[str], int] = scorer.score
    assert bound("ab").result() == 12
    assert_type(scorer.score("ab"), Future[int])
    assert_type(scorer.score.sync("ab"), int)
    assert_type(scorer.score.map(["a", "bb"]), MapIterator[int])
    assert_type(scorer.tag("x"), Future[str])
    assert_type(scorer.tag.map(["x"]), MapIterator[str])
    assert_type(Scorer.score(scorer, "ab"), Future[int])
    assert_type(Scorer.score.map([scorer], ["ab"]), MapIterator[int])
    assert_type(scorer.score.amap(["a"]), AsyncMapIterator[int])
    unbound: ProcessTask[[Scorer, str], int] = Scorer.score
    assert unbound(scorer, "ab").result() == 12
    assert_type(Scorer.static_above(1), Future[int])
    assert_type(Scorer.static_below(1), Future[int])
    assert scorer.score("ab").result() == 12
    assert scorer.score.sync("ab") == 12
    assert list(scorer.score.map(["a", "bb"])) == [11, 12]
    # A bound method's variant stays bound.
    assert_type(scorer.score.options(retries=1)("ab"), Future[int])
    assert_type(Scorer.score.options(timeout=2.0)(scorer, "ab"), Future[int])
    assert scorer.score.options(retries=1)("ab").result() == 12
    assert scorer.tag("x").result() == "x:10"
    assert list(scorer.tag.map(["x"])) == ["x:10"]
    assert Scorer.score(scorer, "ab").result() == 12
    assert list(Scorer.score.map([scorer], ["ab"])) == [12]
    assert Scorer.static_above(1).result() == 2
    assert Scorer.static_below(1).result() == 3


def check_pool(pool: Pool) -> None:
    """Pool.submit is typed through ParamSpec; a decorated task runs its plain function."""
    assert_type(pool.submit(plain_pow, 2, 10), Future[int])
    assert_type(pool.submit(plain_pow, base=2, exponent=3), Future[int])
    assert_type(pool.submit(crunch, ["ab"], scale=3), Future[int])
    assert_type(pool.submit(halve, 3), Future[float])
    assert_type(pool.submit(fetch, "u"), Future[bytes])
    assert_type(pool.submit(Scorer(1).score, "ab"), Future[int])
    assert_type(pool.map(plain_pow, [2, 3], [2, 2]), MapIterator[int])
    assert_type(pool.map(halve, [1, 2], timeout=60.0, chunksize=2), MapIterator[float])
    assert_type(pool.map(fetch, ["a"]), MapIterator[bytes])
    # A partial of a task runs its plain function: its value, not a Future.
    assert_type(pool.submit(functools.partial(crunch, scale=3), ["ab"]), Future[int])
    assert_type(pool.map(functools.partial(crunch, scale=3), [["ab"]]), MapIterator[int])
    assert_type(pool.submit(functools.partial(plain_pow, 2), 10), Future[int])
    assert pool.submit(plain_pow, 2, 10).result() == 1024
    assert pool.submit(crunch, ["ab"], scale=3).result() == 6
    assert pool.submit(halve, 3).result() == 1.5
    assert pool.submit(fetch, "u").result() == b"u"
    assert pool.submit(Scorer(1).score, "ab").result() == 3
    assert list(pool.map(plain_pow, [2, 3], [2, 2])) == [4, 9]
    assert list(pool.map(halve, [1, 2], timeout=60.0, chunksize=2)) == [0.5, 1.0]
    assert list(pool.map(fetch, ["a"])) == [b"a"]
    assert pool.submit(functools.partial(crunch, scale=3), ["ab"]).result() == 6
    assert list(pool.map(functools.partial(crunch, scale=3), [["ab"]])) == [6]
    with pool.map(crunch, [["a"], ["bb"]], progress=lambda done: None) as mapped:
        assert_type(mapped, MapIterator[int])
        assert next(mapped) == 1

    async def from_asyncio() -> tuple[int, int, int]:
        # An asyncio program gets a task's value three ways, each typed R.
        loop = asyncio.get_running_loop()
        by_executor = await loop.run_in_executor(pool, crunch.sync, ["ab"])
        assert_type(by_executor, int)
        by_partial = await loop.run_in_executor(
            pool, functools.partial(crunch.sync, scale=2), ["a"]
        )
        assert_type(by_partial, int)
        wrapped = await asyncio.wrap_future(pool.submit(crunch, ["abc"]))
        assert_type(wrapped, int)
        return by_executor, by_partial, wrapped

    assert asyncio.run(from_asyncio()) == (2, 2, 3)


def check_pool_object() -> None:
    """The pool itself: a context manager, an Executor, typed properties."""
    with Pool(processes=0, threads=0) as pool:
        assert_type(pool, Pool)
        executor: concurrent.futures.Executor = pool
        assert executor is pool
        assert_type(pool.processes, int)
        assert_type(pool.threads, int | None)
        assert_type(pool.tasks_per_process, int)
        assert_type(pool.start_method, str)
        assert_type(pool.worker_pids(), list[int])
        check_pool(pool)
    assert_type(pool.shutdown(wait=True, cancel_futures=False), None)
    # ProcessPoolExecutor's names for two options.
    spawn = multiprocessing.get_context("spawn")
    with Pool(max_workers=1, mp_context=spawn, threads=0) as drop_in:
        assert_type(drop_in, Pool)
        assert drop_in.start_method == "spawn"

    # async with: the same pool, entered and left without blocking the loop.
    async def held() -> int:
        async with Pool(processes=0, threads=0) as held_pool:
            assert_type(held_pool, Pool)
            return await asyncio.wrap_future(crunch(["ab"]))

    assert asyncio.run(held()) == 2


@per_worker
def counter_list() -> list[int]:
    """One list per process."""
    return []


@per_worker(scope="thread")
def per_thread_dict() -> dict[str, int]:
    """One dict per thread."""
    return {}


def check_per_worker() -> None:
    assert_type(counter_list, PerWorker[list[int]])
    assert_type(counter_list(), list[int])
    assert_type(per_thread_dict, PerWorker[dict[str, int]])
    assert_type(per_thread_dict(), dict[str, int])
    assert counter_list() is counter_list()


@thread_subtask
async def fetch_async(url: str, retries: int = 0) -> bytes:
    """A bare async subtask: R is what the coroutine returns."""
    await asyncio.sleep(0)
    return url.encode() * (retries + 1)


@thread_subtask(name="lookup_async")
async def lookup_async(key: str, *, default: int = 0) -> int:
    """An async subtask with options and a keyword-only argument."""
    return len(key) + default


class Crawler:
    """An async subtask as a method: through an instance, `self` is bound."""

    @thread_subtask
    async def get(self, url: str) -> str:
        return url.upper()


@process_task
def crawl(urls: list[str]) -> int:
    """A process task that fans out to async subtasks."""
    pages = fetch_async.map(urls)
    assert_type(pages, MapIterator[bytes])
    futures = [lookup_async(url, default=1) for url in urls]
    assert_type(futures, list[Future[int]])
    return sum(len(page) for page in pages) + sum(gather(futures))


def check_async_subtasks() -> None:
    """An async def keeps its parameters; calls give Future of the awaited type."""
    subtask: AsyncSubtask[[str, int], bytes] = fetch_async
    with_name: AsyncSubtask[..., int] = lookup_async
    assert subtask is fetch_async and with_name is lookup_async
    assert_type(fetch_async.task_name, str)
    wrapped: Callable[[str, int], Coroutine[Any, Any, bytes]] = fetch_async.__wrapped__
    assert asyncio.run(wrapped("u", 0)) == b"u"
    assert_type(fetch_async("u"), Future[bytes])
    assert_type(fetch_async("u", retries=1), Future[bytes])
    assert_type(lookup_async("k", default=2), Future[int])
    assert_type(crawl(["a"]), Future[int])
    assert fetch_async("u", retries=1).result() == b"uu"
    assert lookup_async("k", default=2).result() == 3
    assert crawl(["a", "bb"]).result() == 3 + 5
    assert_type(fetch_async.sync("u"), bytes)
    assert fetch_async.sync("u") == b"u"
    assert_type(fetch_async.map(["a", "b"]), MapIterator[bytes])
    assert_type(fetch_async.map(["a"], [1], ordered=False, buffersize=2), MapIterator[bytes])
    assert_type(list(lookup_async.map(["k"])), list[int])
    assert list(fetch_async.map(["a", "b"])) == [b"a", b"b"]
    assert_type(gather([fetch_async("a"), fetch_async("b")]), list[bytes])
    assert gather([fetch_async("a"), fetch_async("b")]) == [b"a", b"b"]
    crawler = Crawler()
    assert_type(crawler.get("u"), Future[str])
    assert_type(crawler.get.sync("u"), str)
    assert_type(crawler.get.map(["u"]), MapIterator[str])
    assert crawler.get("u").result() == "U" and list(crawler.get.map(["v"])) == ["V"]

    async def consume() -> tuple[list[bytes], bytes]:
        pages = fetch_async.amap(["u", "v"])
        assert_type(pages, AsyncMapIterator[bytes])
        one = await asyncio.wrap_future(fetch_async("w"))
        assert_type(one, bytes)
        return [p async for p in pages], one

    assert asyncio.run(consume()) == ([b"u", b"v"], b"w")
