"""Crawl the site of ``crawl.py`` with async subtasks instead of thread subtasks.

The same site, server, parsing and level-by-level crawl as ``crawl.py``; only
the fetch differs: an ``async def`` decorated with ``@thread_subtask`` (an
async subtask), which runs on each worker's own event loop, so all of a
batch's pages are in flight at once on one thread, whatever ``threads`` is.
The client is asyncio's own streams (HTTP/1.0), so nothing else needs
installing; with httpx, ``fetch`` would be ``(await client.get(url)).content``.

It runs the crawl twice, with thread subtasks and with async subtasks, and
checks that both find the same pages, links and words.

Run it: ``python examples/async_crawl.py [pages]``.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

from crawl import PAGES, make_site, parse, serve, timed_crawl

from nestpool import Pool, process_task, thread_subtask


@thread_subtask
async def fetch(url: str) -> bytes:
    """IO: download one page (on the event loop of the calling process)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET {parts.path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0].decode()
    if " 200 " not in status:
        raise OSError(f"{url}: {status}")
    return body


@process_task
def crawl_batch_async(base: str, paths: list[str]) -> list[tuple[str, list[str], int, str]]:
    """One batch: fetch its pages at once (async subtasks), parse each (here)."""
    results = []
    for path, page in zip(paths, fetch.map([base + p for p in paths]), strict=True):
        links, words, digest = parse(page)
        results.append((path, links, sum(words.values()), digest))
    return results


def main() -> None:
    pages = int(sys.argv[1]) if len(sys.argv) > 1 else PAGES
    site = make_site(pages)
    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"serving {pages} pages at {base}")
    try:
        threads, t_threads = timed_crawl(
            "thread subtasks (16 threads each):", base, Pool(processes=None, threads=16)
        )
        coroutines, t_async = timed_crawl(
            "async subtasks (one loop each):", base, Pool(processes=None), crawl_batch_async
        )
    finally:
        server.shutdown()
        server.server_close()
    print(f"pages crawled: {coroutines[0]} of {pages}")
    print(f"results match the thread-subtask run: {threads == coroutines}")
    print(f"async subtasks against thread subtasks: {t_threads / t_async:.2f}x")


if __name__ == "__main__":
    main()
