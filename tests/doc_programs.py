"""Run the complete programs of README.md and docs/ as a reader would.

``program(path, heading)`` takes a program's code from the markdown itself
(the first Python block of a section), so the page and its test cannot drift
(``block`` takes a block of another language: the output a page shows);
``run_program`` saves it to a file and runs it with this interpreter in a
subprocess, as ``python file.py ARGS``; ``serve_pages`` serves the pages a
program fetches on 127.0.0.1, from a thread of the test process, and counts
the requests. Nothing here reaches past this machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_FENCED = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
_HEADING = re.compile(r"^#{1,6} ", re.M)


def block(path: Path, heading: str, language: str) -> str:
    """The first top-level ```language block of the section ``heading`` (a
    whole markdown heading line, ``"## Quickstart"``) of ``path``."""
    text = path.read_text()
    start = re.search(rf"^{re.escape(heading)}$", text, re.M)
    assert start is not None, f"{path.name} has no heading {heading!r}"
    fence = re.compile(rf"^```{re.escape(language)}\n(.*?)\n```[ \t]*$", re.M | re.S)
    found = fence.search(text, start.end())
    assert found is not None, f"{path.name}, {heading!r}: no ```{language} block after it"
    between = _FENCED.sub("", text[start.end() : found.start()])
    assert not _HEADING.search(between), f"{path.name}, {heading!r}: no ```{language} block"
    return found[1] + "\n"


def program(path: Path, heading: str) -> str:
    """The first top-level Python block of the section ``heading`` of ``path``."""
    return block(path, heading, "python")


def run_program(
    code: str,
    directory: Path,
    *args: str,
    name: str = "program.py",
    timeout: float = 150.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Save ``code`` as ``directory/name`` and run it there, as a script (its
    ``__main__``), with ``sys.executable``; its output is captured as text.

    Requests to 127.0.0.1 never go through a proxy the environment names."""
    script = directory / name
    script.write_text(code)
    environment = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    environment["no_proxy"] = environment["NO_PROXY"]
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """What a failed run printed, for an assertion message."""
    return f"exit code {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"


@contextmanager
def serve_pages(pages: Mapping[str, bytes]) -> Iterator[tuple[str, Counter[str]]]:
    """Serve ``{path: body}`` on 127.0.0.1 (an ephemeral port) for the block.

    Yields the base URL (``http://127.0.0.1:PORT``) and a ``Counter`` of the
    paths requested so far; any other path is a 404."""
    hits: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                hits[self.path] += 1
            body = pages.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no line on stderr per request

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="docs-test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
