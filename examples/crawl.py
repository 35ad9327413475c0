"""Crawl a small web site: subtasks fetch pages, process tasks parse them.

The script starts its own HTTP server on 127.0.0.1 (a thread of this process)
serving a few hundred generated pages, each answered after a short delay, as a
real site would. The crawl proceeds level by level from the home page: each
level's URLs are cut into batches; each batch is a ``@process_task`` that
fetches its pages with a ``@thread_subtask`` (on the worker's own persistent
thread pool, so the waits overlap) and parses them (CPU work, in parallel
across the worker processes).

It runs the same crawl three ways and compares them:

- one process, one thread: ``Pool(processes=0, threads=0)`` runs everything
  inline (the plain serial program);
- one process, many threads: ``Pool(processes=0, threads=16)``: the fetches
  overlap, the parsing does not (the GIL);
- nestpool: worker processes, each with a thread pool.

Run it: ``python examples/crawl.py [pages]``. It prints the pages, links and
words found (identical in the three runs) and each run's throughput.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nestpool import Pool, gather, process_task, thread_subtask

PAGES = 200
LATENCY = 0.015  # seconds the server waits before answering each page
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "si", "tu") for b in "aeiou"]
BATCH = 8  # pages per process task


# ---------------------------------------------------------------- the site


def make_site(pages: int, seed: int = 8) -> dict[str, bytes]:
    """Generate the site: page i links to a few deeper pages and one random page."""
    rng = random.Random(seed)
    site: dict[str, bytes] = {}
    for i in range(pages):
        children = [c for c in range(3 * i + 1, 3 * i + 4) if c < pages]
        links = [*children, rng.randrange(pages)]
        paragraphs = "\n".join(
            "<p>" + " ".join(rng.choices(WORDS, k=120)) + "</p>" for _ in range(40)
        )
        anchors = " ".join(f'<a href="/page/{link}">page {link}</a>' for link in links)
        html = (
            f"<html><head><title>Page {i}</title></head><body><h1>Page {i}</h1>"
            f"<nav>{anchors}</nav>{paragraphs}</body></html>"
        )
        site[f"/page/{i}"] = html.encode()
    return site


def serve(site: dict[str, bytes]) -> ThreadingHTTPServer:
    """Serve ``site`` on 127.0.0.1 on a free port, from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = site.get(self.path)
            time.sleep(LATENCY)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # listen backlog: many crawler threads connect at once

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="crawl-server", daemon=True).start()
    return server


# ---------------------------------------------------------------- the crawler


@thread_subtask
def fetch(url: str) -> bytes:
    """IO: download one page (runs on the thread pool of the calling process)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return body


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: bytes) -> tuple[list[str], Counter[str], str]:
    """CPU: the page's links, its word counts and a digest of its text."""
    parser = _PageParser()
    parser.feed(page.decode())
    text = " ".join(parser.text)
    words = Counter(re.findall(r"[a-z]+", text.lower()))
    return parser.links, words, hashlib.sha256(text.encode()).hexdigest()


@process_task
def crawl_batch(base: str, paths: list[str]) -> list[tuple[str, list[str], int, str]]:
    """One batch: fetch its pages concurrently (subtasks), parse each (here)."""
    results = []
    for path, page in zip(paths, fetch.map([base + p for p in paths]), strict=True):
        links, words, digest = parse(page)
        results.append((path, links, sum(words.values()), digest))
    return results


def batches(paths: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(paths), BATCH):
        yield paths[start : start + BATCH]


def crawl(base: str, batch_task: Any = None) -> tuple[int, int, int, str]:
    """Crawl from the home page, level by level, a batch per process task
    (``crawl_batch``, or ``batch_task``); return pages, links, words and a
    digest of everything found (the same whichever way the crawl ran)."""
    task = crawl_batch if batch_task is None else batch_task
    seen = {"/page/0"}
    frontier = ["/page/0"]
    pages = links = words = 0
    digests: dict[str, str] = {}
    while frontier:
        next_frontier: list[str] = []
        level = task.map([base] * len(frontier), list(batches(frontier)))
        for batch in level:
            for path, page_links, page_words, digest in batch:
                pages += 1
                links += len(page_links)
                words += page_words
                digests[path] = digest
                for link in page_links:
                    if link not in seen:
                        seen.add(link)
                        next_frontier.append(link)
        frontier = next_frontier
    summary = hashlib.sha256("".join(digests[p] for p in sorted(digests)).encode()).hexdigest()
    return pages, links, words, summary[:16]


@process_task
def worker_pid() -> int:
    """Used to start the workers before timing."""
    return os.getpid()


def timed_crawl(
    label: str, base: str, pool: Pool, batch_task: Any = None
) -> tuple[tuple[int, int, int, str], float]:
    with pool:
        # Start the workers before timing (with another task: a map sizes its
        # chunks from how long the task's earlier calls took).
        gather([worker_pid() for _ in range(pool.processes)])
        start = time.perf_counter()
        result = crawl(base, batch_task)
        seconds = time.perf_counter() - start
    pages, links, words, digest = result
    print(
        f"{label:<34} pages={pages} links={links} words={words} digest={digest} "
        f"time={seconds:.2f}s throughput={pages / seconds:.0f} pages/s",
        flush=True,
    )
    return result, seconds


def main() -> None:
    pages = int(sys.argv[1]) if len(sys.argv) > 1 else PAGES
    site = make_site(pages)
    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    size = sum(map(len, site.values())) / 1e6
    print(f"serving {pages} pages ({size:.1f} MB, {LATENCY * 1000:.0f} ms latency) at {base}")
    try:
        serial, t_serial = timed_crawl("1 process, 1 thread (serial):", base, Pool(0, 0))
        threaded, t_threaded = timed_crawl("1 process, 16 threads:", base, Pool(0, 16))
        nested, t_nested = timed_crawl(
            "nestpool (processes x 16 threads):", base, Pool(processes=None, threads=16)
        )
    finally:
        server.shutdown()
        server.server_close()
    print(f"pages crawled: {nested[0]} of {pages}")
    print(f"results match the single-process runs: {serial == threaded == nested}")
    print(
        f"speed-up over serial: {t_serial / t_nested:.1f}x; "
        f"over 1 process with threads: {t_threaded / t_nested:.1f}x"
    )


if __name__ == "__main__":
    main()
