"""Workload 2, crawl: process tasks fetch pages over HTTP in subtasks, then parse them.

A ``ThreadingHTTPServer`` runs in its own process on 127.0.0.1 and answers
each GET of ``/page/N`` after ``latency_ms`` (a real site's latency), with a
generated HTML page of a few KB. Each process task fetches ``pages`` URLs with
``urllib`` in subtasks (all of one task's fetches can overlap), then parses
every page with ``html.parser`` (links, words, a digest: CPU work that holds
the GIL). The same crawl with async subtasks fetches with aiohttp on each
worker's event loop; aiomultiprocess runs each task as a coroutine that
fetches its pages at once with aiohttp, then parses them.

The ideal is max(total CPU / cores, longest chain), with the CPU measured in
this run by a serial pass over a sample of pages: the client's CPU per fetch
(``time.process_time`` around serial fetches), the server's CPU per request
(its process's CPU times, read with psutil) and the parser's CPU per page. The
server shares the cores with the workers, so its CPU counts. The longest chain
is one task's fetches at once (latency + one fetch's CPU) then its parsing.
The client's CPU per fetch is measured for urllib and for aiohttp, and each
row is shown against the ideal of its own client.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks import _engines, tasks
from benchmarks._harness import Check, Result, Row, Size, Table, ideal_rows, usable_cores
from benchmarks.hierarchy import (
    AIOMULTIPROCESS_CONCURRENCY,
    OVERSUBSCRIBE,
    RECOMMENDED_TPP,
    async_engines,
    async_shapes,
    measure_round_robin,
)

NAME = "crawl"
TITLE = "Crawl: fetch pages from a local HTTP server in subtasks, parse them in process tasks"

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "si", "tu") for b in "aeiou"]


def make_page(index: int, pages: int) -> bytes:
    """Page ``index``: a title, a few links, some paragraphs (about 4 KB)."""
    rng = random.Random(index)
    links = " ".join(f'<a href="/page/{rng.randrange(pages)}">page</a>' for _ in range(8))
    paragraphs = "\n".join("<p>" + " ".join(rng.choices(WORDS, k=60)) + "</p>" for _ in range(10))
    html = (
        f"<html><head><title>Page {index}</title></head><body><h1>Page {index}</h1>"
        f"<nav>{links}</nav>{paragraphs}</body></html>"
    )
    return html.encode()


def serve(conn: Any, latency: float, pages: int) -> None:
    """The server process: answer GET /page/N after ``latency`` seconds."""
    site = {f"/page/{i}": make_page(i, pages) for i in range(pages)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = site.get(self.path)
            time.sleep(latency)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    server = Server(("127.0.0.1", 0), Handler)
    conn.send(server.server_address[1])
    conn.close()
    server.serve_forever()


def measure_ideal(
    base: str, server_pid: int, sample: int, pages: int
) -> tuple[float, float, float]:
    """(client CPU per fetch, server CPU per request, parse CPU per page), in seconds."""
    import psutil

    server = psutil.Process(server_pid)
    urls = [f"{base}/page/{i % pages}" for i in range(sample)]
    tasks.fetch_url(urls[0])
    # The best of three passes: on a busy machine (or a VM whose host is busy)
    # CPU time per operation inflates, and the ideal is a lower bound.
    client = server_cpu = float("inf")
    bodies: list[bytes] = []
    part = max(1, sample // 3)
    for start in range(0, part * 3, part):
        before = server.cpu_times()
        started = time.process_time()
        bodies += [tasks.fetch_url(url) for url in urls[start : start + part]]
        client = min(client, (time.process_time() - started) / part)
        after = server.cpu_times()
        server_cpu = min(
            server_cpu, ((after.user - before.user) + (after.system - before.system)) / part
        )
    best_parse = float("inf")
    for _ in range(3):
        started = time.process_time()
        for body in bodies:
            tasks.parse_page(body)
        best_parse = min(best_parse, (time.process_time() - started) / len(bodies))
    return client, server_cpu, best_parse


def measure_async_client(base: str, sample: int, pages: int) -> float:
    """The async client's (aiohttp's) CPU per fetch, in seconds: serial
    fetches on an event loop of this thread, the best of three passes."""
    urls = [f"{base}/page/{i % pages}" for i in range(sample)]
    part = max(1, sample // 3)

    async def passes() -> float:
        await tasks.afetch_url(urls[0])
        best = float("inf")
        for start in range(0, part * 3, part):
            started = time.process_time()
            for url in urls[start : start + part]:
                await tasks.afetch_url(url)
            best = min(best, (time.process_time() - started) / part)
        await tasks.close_session()
        return best

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(passes())
    finally:
        loop.close()


def run(size: Size, start_method: str = "forkserver") -> Result:
    cores = usable_cores()
    count = size.pick(2, 10, 40)
    per_task = size.pick(5, 50, 50)
    latency_ms = size.pick(5.0, 20.0, 20.0)
    site_pages = 500
    tpps = size.pick([2], [RECOMMENDED_TPP], [1, 2, RECOMMENDED_TPP, 6])
    over = cores * OVERSUBSCRIBE
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe()
    server = context.Process(  # type: ignore[attr-defined]
        target=serve,
        args=(child_conn, latency_ms / 1000, site_pages),
        name="bench-http-server",
        daemon=True,
    )
    server.start()
    child_conn.close()
    try:
        port = parent_conn.recv()
        base = f"http://127.0.0.1:{port}"
        client, server_cpu, parse = measure_ideal(
            base, server.pid, size.pick(20, 200, 300), site_pages
        )
        async_client = measure_async_client(base, size.pick(20, 200, 300), site_pages)
        total_pages = count * per_task
        total_cpu = total_pages * (client + server_cpu + parse)
        chain = latency_ms / 1000 + client + server_cpu + per_task * parse
        ideal = max(total_cpu / cores, chain)
        async_total_cpu = total_pages * (async_client + server_cpu + parse)
        async_ideal = max(
            async_total_cpu / cores,
            latency_ms / 1000 + async_client + server_cpu + per_task * parse,
        )

        def batch(i: int) -> list[str]:
            return [f"{base}/page/{(i * per_task + j) % site_pages}" for j in range(per_task)]

        def jobs_for(style: str, n: int = count) -> list[tuple[Any, ...]]:
            if style in ("nestpool", "nestpool-async", "aiomultiprocess"):
                return [(batch(i),) for i in range(n)]
            return [(batch(i), per_task) for i in range(n)]

        def warm_for(style: str) -> list[tuple[Any, ...]]:
            # Short batches, enough for each worker to get some (its client,
            # aiohttp's import and session included) even at the most processes.
            most = cores * max([*tpps, OVERSUBSCRIBE, AIOMULTIPROCESS_CONCURRENCY])
            return [(job[0][:2], *job[1:]) for job in jobs_for(style, 4 * most)]

        fns = {
            "nestpool": tasks.np_crawl,
            "nestpool-async": tasks.np_async_crawl,
            "aiomultiprocess": tasks.amp_crawl,
            "naive": tasks.naive_crawl,
            "persistent": tasks.persistent_crawl,
        }
        expected = [tasks._summarise([tasks.fetch_url(u) for u in batch(i)]) for i in range(count)]
        engines: list[_engines.Engine] = [
            _engines.Nestpool(
                f"nestpool, tasks_per_process={tpp}",
                cores,
                threads=per_task * tpp,
                tasks_per_process=tpp,
                start_method=start_method,
            )
            for tpp in tpps
        ]
        engines.append(
            _engines.Nestpool(
                f"nestpool (recommended), {over} processes, tasks_per_process=1",
                over,
                threads=per_task,
                tasks_per_process=1,
                start_method=start_method,
            )
        )
        engines += [
            _engines.Stdlib(
                f"naive: new ThreadPoolExecutor per task, {cores} processes",
                cores,
                style="naive",
                threads=per_task,
                start_method=start_method,
            ),
            _engines.Stdlib(
                f"stdlib: persistent thread pool, {cores} processes",
                cores,
                style="persistent",
                threads=per_task,
                start_method=start_method,
            ),
            _engines.Stdlib(
                f"stdlib: persistent thread pool, {over} processes",
                over,
                style="persistent",
                threads=per_task,
                start_method=start_method,
            ),
            _engines.Loky(
                f"loky: persistent thread pool, {over} processes", over, threads=per_task
            ),
            _engines.Mpire(
                f"mpire: persistent thread pool, {over} processes", over, start_method=start_method
            ),
            _engines.Joblib(f"joblib: persistent thread pool, {over} processes", over),
        ]
        engines += async_engines(cores, per_task, async_shapes(size), start_method)
        all_times = measure_round_robin(engines, fns, jobs_for, warm_for, expected, size.repeats)
        rows = [Row(engine.label, times) for engine, times in zip(engines, all_times, strict=True)]
    finally:
        server.kill()
        server.join(5)
    async_styles = ("nestpool-async", "aiomultiprocess")
    for engine, row in zip(engines, rows, strict=True):
        ideal_rows([row], async_ideal if engine.style in async_styles else ideal)
    best = next(
        r for r in rows if r.label.startswith("nestpool (recommended)") and "async" not in r.label
    )
    best_async = next(r for r in rows if r.label.startswith("nestpool (recommended), async"))
    amp = next(r for r in rows if r.label.startswith("aiomultiprocess"))
    assert best.ratio_min is not None and best.ratio_median is not None
    assert best_async.ratio_min is not None and best_async.ratio_median is not None
    table = Table(
        f"{count} process tasks x {per_task} pages, {latency_ms:g} ms server latency, "
        f"{cores} cores; ideal {ideal * 1000:.0f} ms with urllib, "
        f"{async_ideal * 1000:.0f} ms with aiohttp",
        "time / ideal with the row's own client: urllib for thread subtasks and the "
        "thread-pool baselines, aiohttp for async subtasks and aiomultiprocess (lower is better)",
        rows,
        [
            f"measured per page: client fetch CPU {client * 1e6:.0f} us with urllib, "
            f"{async_client * 1e6:.0f} us with aiohttp (serial, in the parent), server CPU "
            f"{server_cpu * 1e6:.0f} us, parse CPU {parse * 1e6:.0f} us; total CPU "
            f"{total_cpu * 1000:.0f} ms with urllib, {async_total_cpu * 1000:.0f} ms with "
            f"aiohttp, over {cores} cores",
        ],
    )
    for start in ("naive", f"stdlib: persistent thread pool, {over}"):
        base_row = next((r for r in rows if r.label.startswith(start)), None)
        if base_row is not None:
            table.notes.append(
                f"speed-up of {best.label} over '{base_row.label}': "
                f"{base_row.min / best.min:.2f}x (min), "
                f"{base_row.median / best.median:.2f}x (median)"
            )
    for base_row in (best, amp):
        table.notes.append(
            f"speed-up of {best_async.label} over '{base_row.label}': "
            f"{base_row.min / best_async.min:.2f}x (min), "
            f"{base_row.median / best_async.median:.2f}x (median)"
        )
    checks = [
        Check(
            f"crawl: {row.label} <= 1.10x ideal",
            f"{row.ratio_min:.2f}x (min), {row.ratio_median:.2f}x (median)",
            row.ratio_min <= 1.10,
        )
        for row in (best, best_async)
        if row.ratio_min is not None
    ]
    setup = (
        f"server: ThreadingHTTPServer in its own process, {site_pages} pages of about "
        f"{len(make_page(0, site_pages)) / 1000:.1f} KB; nestpool threads = pages x "
        "tasks_per_process; baselines: one thread per page of a task; async subtasks and "
        "aiomultiprocess: aiohttp, one session per event loop, every page of a task in "
        "flight at once"
    )
    return Result(
        NAME,
        TITLE,
        setup,
        [table],
        checks,
        {
            "ideal_s": ideal,
            "async_ideal_s": async_ideal,
            "client_cpu_us": client * 1e6,
            "async_client_cpu_us": async_client * 1e6,
        },
    )
