"""The functions the engines run, importable by every kind of worker process.

Each workload has one logic, written once per engine style:

- nestpool: ``@process_task`` / ``@thread_subtask`` (``np_*``);
- the tutorial's naive nesting: a new ``ThreadPoolExecutor`` in every task
  (``naive_*``);
- nestpool's async subtasks: ``@thread_subtask`` on an ``async def``, run on
  each worker's own event loop (``np_async_*``);
- aiomultiprocess: a coroutine per process task, on each worker's event loop
  (``amp_*``);
- "done well" for the standard library, loky, mpire and joblib: a thread pool
  created once per worker process and reused by every task there
  (``persistent_*``; the standard library and loky create it in their
  ``initializer``, mpire and joblib on first use).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import Any

from benchmarks._harness import spin
from nestpool import process_task, thread_subtask

# ------------------------------------------------------------------ helpers

_thread_pool: ThreadPoolExecutor | None = None
_thread_pool_lock = threading.Lock()


def init_thread_pool(threads: int) -> None:
    """Initializer: this worker's persistent thread pool (stdlib, loky)."""
    global _thread_pool
    _thread_pool = ThreadPoolExecutor(threads, thread_name_prefix="bench-io")


def persistent_thread_pool(threads: int) -> ThreadPoolExecutor:
    """This worker's persistent thread pool, created on first use (mpire, joblib)."""
    global _thread_pool
    pool = _thread_pool
    if pool is None:
        with _thread_pool_lock:
            pool = _thread_pool
            if pool is None:
                pool = _thread_pool = ThreadPoolExecutor(threads, thread_name_prefix="bench-io")
    return pool


def identity(x: Any) -> Any:
    """A trivial function (tiny tasks)."""
    return x


def worker_pid(_: object = None) -> int:
    """The pid of the process running the call."""
    return os.getpid()


# ------------------------------------------------------------------ hierarchy


def io_sleep(seconds: float, value: int) -> int:
    """An IO wait: it holds no CPU and releases the GIL."""
    time.sleep(seconds)
    return value


def naive_unit(index: int, subtasks: int, io_seconds: float, iterations: int, threads: int) -> int:
    """The tutorial's way: a new thread pool for every process task."""
    with ThreadPoolExecutor(threads) as executor:
        values = list(executor.map(io_sleep, [io_seconds] * subtasks, range(subtasks)))
    spin(iterations)
    return index + sum(values)


def persistent_unit(
    index: int, subtasks: int, io_seconds: float, iterations: int, threads: int
) -> int:
    """Done well: the worker's persistent thread pool (initializer or first use)."""
    executor = persistent_thread_pool(threads)
    values = list(executor.map(io_sleep, [io_seconds] * subtasks, range(subtasks)))
    spin(iterations)
    return index + sum(values)


def persistent_unit_star(args: tuple[int, int, float, int, int]) -> int:
    """``persistent_unit`` taking one tuple (mpire passes one argument)."""
    return persistent_unit(*args)


@thread_subtask
def np_io_sleep(seconds: float, value: int) -> int:
    """nestpool: the IO wait as a subtask."""
    time.sleep(seconds)
    return value


@process_task
def np_unit(index: int, subtasks: int, io_seconds: float, iterations: int) -> int:
    """nestpool: a process task that fans out its IO waits as subtasks."""
    values = list(np_io_sleep.map([io_seconds] * subtasks, range(subtasks)))
    spin(iterations)
    return index + sum(values)


@thread_subtask
async def np_async_sleep(seconds: float, value: int) -> int:
    """nestpool: the IO wait as an async subtask (the worker's event loop)."""
    await asyncio.sleep(seconds)
    return value


@process_task
def np_async_unit(index: int, subtasks: int, io_seconds: float, iterations: int) -> int:
    """nestpool: a process task that fans out its IO waits as async subtasks."""
    values = list(np_async_sleep.map([io_seconds] * subtasks, range(subtasks)))
    spin(iterations)
    return index + sum(values)


async def amp_sleep(seconds: float, value: int) -> int:
    """aiomultiprocess: one IO wait."""
    await asyncio.sleep(seconds)
    return value


async def amp_unit(index: int, subtasks: int, io_seconds: float, iterations: int) -> int:
    """aiomultiprocess: a process task as a coroutine: its waits gathered on the
    worker's event loop, then the CPU work (which blocks that loop, as it would
    block nestpool's task thread)."""
    values = await asyncio.gather(*(amp_sleep(io_seconds, v) for v in range(subtasks)))
    spin(iterations)
    return index + sum(values)


class _HandOff:
    """The least a thread pool can do per IO wait, for comparison: ``width``
    threads, each woken through its own lock, no futures, no queue; one
    event when the last is done."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.go = [threading.Lock() for _ in range(width)]
        for lock in self.go:
            lock.acquire()
        self.seconds = 0.0
        self.left = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        for i in range(width):
            threading.Thread(target=self._loop, args=(i,), daemon=True).start()

    def _loop(self, i: int) -> None:
        go = self.go[i]
        while True:
            go.acquire()
            time.sleep(self.seconds)
            with self.lock:
                self.left -= 1
                if not self.left:
                    self.done.set()

    def run(self, seconds: float) -> None:
        self.done.clear()
        self.seconds = seconds
        self.left = self.width
        for lock in self.go:
            lock.release()
        self.done.wait()


@process_task
def np_subtask_cpu(rounds: int, width: int, seconds: float) -> dict[str, float]:
    """Inside a worker: microseconds of this process's CPU per IO subtask
    (``time.sleep(seconds)``, ``width`` at once, ``rounds`` times), through
    nestpool's subtask pool, a ``ThreadPoolExecutor``, the least a thread pool
    can do (``_HandOff``), and the sleeps alone in one thread; then per async
    subtask (``asyncio.sleep(seconds)``, ``width`` at once) through nestpool's
    event loop, and the least an event loop can do: the same sleeps gathered
    on a loop that this thread runs itself (no thread hop, no futures)."""
    executor = ThreadPoolExecutor(width)
    hand_off = _HandOff(width)
    args = ([seconds] * width, range(width))
    own_loop = asyncio.new_event_loop()

    def nestpool_map() -> None:
        list(np_io_sleep.map(*args))

    def nestpool_async_map() -> None:
        list(np_async_sleep.map(*args))

    async def gathered() -> None:
        await asyncio.gather(*(amp_sleep(seconds, v) for v in range(width)))

    def own_loop_gather() -> None:
        own_loop.run_until_complete(gathered())

    def executor_map() -> None:
        list(executor.map(io_sleep, *args))

    def hand_off_run() -> None:
        hand_off.run(seconds)

    def sleeps_alone() -> None:
        for _ in range(width):
            time.sleep(seconds)

    ways = {
        "nestpool subtask": nestpool_map,
        "ThreadPoolExecutor": executor_map,
        "minimal hand-off": hand_off_run,
        "time.sleep alone": sleeps_alone,
        "nestpool async subtask": nestpool_async_map,
        "asyncio.gather, one thread": own_loop_gather,
    }
    for run in ways.values():
        run()  # threads started, first use paid
    # Round-robin, best of three turns each, as the host's speed drifts.
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(3):
        for name, run in ways.items():
            started = time.process_time()
            for _ in range(rounds):
                run()
            spent = (time.process_time() - started) / (rounds * width) * 1e6
            best[name] = min(best[name], spent)
    executor.shutdown(wait=True)
    own_loop.close()
    return best


@process_task
def np_spin(iterations: int) -> int:
    """nestpool: CPU work only (the measured CPU floor)."""
    return spin(iterations)


# ------------------------------------------------------------------ crawl


class PageParser(HTMLParser):
    """Collects a page's links and text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


_WORD = re.compile(r"[a-z]+")


def parse_page(page: bytes) -> tuple[int, int, str]:
    """CPU: the page's link count, word count and a digest of its text."""
    parser = PageParser()
    parser.feed(page.decode())
    text = " ".join(parser.text)
    words = len(_WORD.findall(text))
    return len(parser.links), words, hashlib.sha256(text.encode()).hexdigest()[:8]


def fetch_url(url: str) -> bytes:
    """IO: one HTTP GET with urllib."""
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
    return body


def _summarise(pages: list[bytes]) -> tuple[int, int]:
    links = words = 0
    for page in pages:
        page_links, page_words, _digest = parse_page(page)
        links += page_links
        words += page_words
    return links, words


def naive_crawl(urls: list[str], threads: int) -> tuple[int, int]:
    """The tutorial's way: a new thread pool per batch of pages."""
    with ThreadPoolExecutor(threads) as executor:
        pages = list(executor.map(fetch_url, urls))
    return _summarise(pages)


def persistent_crawl(urls: list[str], threads: int) -> tuple[int, int]:
    """Done well: the worker's persistent thread pool."""
    pages = list(persistent_thread_pool(threads).map(fetch_url, urls))
    return _summarise(pages)


def persistent_crawl_star(args: tuple[list[str], int]) -> tuple[int, int]:
    """``persistent_crawl`` taking one tuple (mpire)."""
    return persistent_crawl(*args)


@thread_subtask
def np_fetch(url: str) -> bytes:
    """nestpool: one fetch as a subtask."""
    return fetch_url(url)


@process_task
def np_crawl(urls: list[str]) -> tuple[int, int]:
    """nestpool: fetch a batch of pages in subtasks, parse them here."""
    return _summarise(list(np_fetch.map(urls)))


#: each event loop's aiohttp session (a client is bound to the loop it was
#: made on): nestpool's loop in a worker, aiomultiprocess's, the parent's
_sessions: dict[asyncio.AbstractEventLoop, Any] = {}


def _session() -> Any:
    """The running loop's ``aiohttp.ClientSession``, made on first use and
    kept, as a program keeps one client per loop; no connection limit (every
    page of a task in flight at once, as the thread subtasks are)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        session = _sessions[loop] = aiohttp.ClientSession(connector=connector)
    return session


async def close_session() -> None:
    """Close the running loop's session (the parent's, after measuring)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


async def afetch_url(url: str) -> bytes:
    """IO: one HTTP GET with aiohttp."""
    async with _session().get(url) as response:
        body: bytes = await response.read()
    return body


@thread_subtask
async def np_afetch(url: str) -> bytes:
    """nestpool: one fetch as an async subtask (the worker's event loop)."""
    return await afetch_url(url)


@process_task
def np_async_crawl(urls: list[str]) -> tuple[int, int]:
    """nestpool: fetch a batch of pages in async subtasks, parse them here."""
    return _summarise(list(np_afetch.map(urls)))


async def amp_crawl(urls: list[str]) -> tuple[int, int]:
    """aiomultiprocess: fetch a batch of pages at once on the worker's loop,
    then parse them (blocking that loop)."""
    return _summarise(list(await asyncio.gather(*(afetch_url(url) for url in urls))))


# ------------------------------------------------------------------ tiny tasks


@process_task
def np_identity(x: int) -> int:
    """nestpool: a trivial process task."""
    return x


@process_task
def np_tiny_warm(x: int) -> int:
    """Used to start the workers (another task than the one timed, so that the
    automatic chunk size learns nothing from it)."""
    return x


# ------------------------------------------------------------------ subtask hop


@thread_subtask
def np_trivial(x: int) -> int:
    """nestpool: a trivial subtask."""
    return x


def _per_call(fn: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) / count * 1e6


@process_task
def np_hop(count: int, threads: int) -> dict[str, float]:
    """Inside one worker: microseconds per trivial subtask, nestpool vs a
    ``ThreadPoolExecutor`` of the same size in the same process."""
    list(np_trivial.map(range(200)))  # the persistent pool's threads exist

    def call_and_wait() -> None:
        for i in range(count):
            np_trivial(i).result()

    def submit_all() -> None:
        futures = [np_trivial(i) for i in range(count)]
        for future in futures:
            future.result()

    def via_map() -> None:
        for _ in np_trivial.map(range(count)):
            pass

    out = {
        "nestpool: call and wait": _per_call(call_and_wait, count),
        "nestpool: submit all, then collect": _per_call(submit_all, count),
        "nestpool: .map": _per_call(via_map, count),
    }
    with ThreadPoolExecutor(threads) as executor:
        list(executor.map(identity, range(200)))

        def tpe_one() -> None:
            for i in range(count):
                executor.submit(identity, i).result()

        def tpe_all() -> None:
            futures = [executor.submit(identity, i) for i in range(count)]
            for future in futures:
                future.result()

        def tpe_map() -> None:
            for _ in executor.map(identity, range(count)):
                pass

        out["ThreadPoolExecutor: submit().result() one by one"] = _per_call(tpe_one, count)
        out["ThreadPoolExecutor: submit all, then collect"] = _per_call(tpe_all, count)
        out["ThreadPoolExecutor: .map"] = _per_call(tpe_map, count)
    return out


# ------------------------------------------------------------------ latency, recovery


@process_task
def np_pid() -> int:
    """nestpool: the worker's pid."""
    return os.getpid()


def kill_self() -> None:  # pragma: no cover - runs in a worker, which dies
    """SIGKILL the calling process."""
    os.kill(os.getpid(), signal.SIGKILL)
