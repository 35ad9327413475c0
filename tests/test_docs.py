"""The docs say what the code does: every page is in the site's nav, the
Faults page has a section per error (when, what it carries, what to do) and
lists every pickling direction, the Python in README.md and docs/ parses and
imports only names nestpool has, the pages speak to users (no references to
the project's working notes or issue numbers), and the complete programs of
the docs run as written and print what the docs say (tests/doc_programs.py
takes them from the markdown and serves what they fetch on 127.0.0.1). (The
site itself is built with ``mkdocs build --strict`` by scripts/docs.sh in
.ci/run.)
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import nestpool
from nestpool import _serialize

from .doc_programs import block, explain, program, run_program, serve_pages

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
_BLOCK = re.compile(r"^( *)```python\n(.*?)\n\1```[ \t]*$", re.M | re.S)


def _nav() -> dict[str, str]:
    """``{title: page}`` of mkdocs.yml's nav (a flat list of ``- Title: page.md``)."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :].split("\n\n")[0]
    return dict(re.findall(r"^  - (.+?): (\S+\.md)$", nav, re.M))


def test_every_page_is_in_the_nav_and_every_topic_has_a_page() -> None:
    nav = _nav()
    assert sorted(nav.values()) == sorted(p.name for p in DOCS.glob("*.md"))
    titles = " | ".join(nav).lower()
    for topic in (
        "getting started",
        "routing",
        "collating",
        "faults",
        "crosses the process boundary",
        "performance",
        "dask",
        "typing",
        "migrating",
        "api reference",
    ):
        assert topic in titles, f"no page about {topic!r} in the nav"
    assert "mermaid" in (DOCS / "routing.md").read_text(), "routing.md has no diagram"
    assert "::: nestpool." in (DOCS / "api.md").read_text()


ERRORS = sorted(
    name
    for name in nestpool.__all__
    if isinstance(getattr(nestpool, name), type)
    and issubclass(getattr(nestpool, name), nestpool.NestpoolError)
)


def _section(text: str, name: str) -> str:
    match = re.search(rf"^## `{name}`\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"docs/faults.md has no section '## `{name}`'"
    return match[1]


@pytest.mark.parametrize("name", ERRORS)
def test_faults_page_has_a_section_per_error(name: str) -> None:
    section = _section((DOCS / "faults.md").read_text(), name)
    for part in ("**When.**", "**What it carries.**", "**What to do.**"):
        assert part in section, f"faults.md, {name}: no {part}"


@pytest.mark.parametrize("name", ERRORS)
def test_faults_page_names_each_attribute_an_error_has(name: str) -> None:
    error = getattr(nestpool, name)
    attributes = {
        attr
        for klass in error.__mro__
        if klass.__module__ == "nestpool"
        for attr, value in vars(klass).items()
        if not attr.startswith("_") and isinstance(value, property)
    }
    init = vars(error).get("__init__")
    if init is not None:
        attributes |= set(re.findall(r"self\.([a-z_]+) = ", _source(init)))
    section = _section((DOCS / "faults.md").read_text(), name)
    missing = [attr for attr in sorted(attributes) if f"`{attr}`" not in section]
    assert not missing, f"faults.md, {name}: attributes not described: {missing}"


def _source(fn: object) -> str:
    import inspect

    return inspect.getsource(fn)  # type: ignore[arg-type]


def test_faults_page_lists_every_pickling_direction() -> None:
    text = _section((DOCS / "faults.md").read_text(), "TaskPicklingError")
    missing = [d for d in _serialize._DIRECTIONS if f'`"{d}"`' not in text]
    assert not missing, f"directions missing from faults.md: {missing}"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.name)
def test_python_in_the_docs_parses_and_uses_real_names(path: Path) -> None:
    for match in _BLOCK.finditer(path.read_text()):
        code = "\n".join(line[len(match[1]) :] for line in match[2].splitlines())
        tree = ast.parse(code, filename=path.name)  # a SyntaxError fails the test
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nestpool"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name), (
                        f"{path.name}: from {node.module} import {alias.name}: no such name"
                    )
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "nestpool"
            ):
                assert hasattr(nestpool, node.attr), f"{path.name}: nestpool.{node.attr}"


#: The pages the first programs fetch: page i holds i % 7 + 1 words, so a
#: page missed or counted twice changes the total.
PAGES = {f"/page/{i}": b" ".join([b"word"] * (i % 7 + 1)) + b"\n" for i in range(25)}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("path", "heading"),
    [(ROOT / "README.md", "## Quickstart"), (DOCS / "index.md", "## A first program")],
    ids=["README quickstart", "index first program"],
)
def test_first_programs_run_as_written(path: Path, heading: str, tmp_path: Path) -> None:
    """The program runs unchanged, given 25 URLs of a local site (3 batches,
    one short): it prints the total of words twice (futures, then map), and
    fetched each page once per way."""
    code = program(path, heading)
    with serve_pages(PAGES) as (base, hits):
        done = run_program(code, tmp_path, *(base + page for page in PAGES))
    assert done.returncode == 0, explain(done)
    total = sum(len(body.split()) for body in PAGES.values())
    assert done.stdout.split() == [str(total), str(total)], explain(done)
    assert done.stderr == "", explain(done)
    assert hits == dict.fromkeys(PAGES, 2), f"requests per page: {dict(hits)}"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_logging_from_workers_reaches_the_parent(tmp_path: Path) -> None:
    """The recipe of docs/pickling.md runs as written: its workers get a
    ``multiprocessing`` queue through ``initargs`` (forkserver), and every
    record they log (from process tasks and from their subtask threads)
    reaches the parent's handler through the ``QueueListener``: on stderr,
    in the parent's format, each once, named after the worker that logged
    it. The messages are those the page shows."""
    heading = "## Logging from workers"
    done = run_program(program(DOCS / "pickling.md", heading), tmp_path)
    assert done.returncode == 0, explain(done)
    assert done.stdout == "20\n", explain(done)
    pattern = r"(\S+) shop: (.+)"
    records = [re.fullmatch(pattern, line) for line in done.stderr.splitlines()]
    assert records and all(records), explain(done)  # nothing else on stderr
    logged = [(m[1], m[2]) for m in records if m is not None]
    assert logged[-1] == ("MainProcess", "done"), explain(done)
    from_workers = [name for name, _ in logged[:-1]]
    assert "MainProcess" not in from_workers, explain(done)
    shown = [
        re.fullmatch(pattern, line)
        for line in block(DOCS / "pickling.md", heading, "text").splitlines()
    ]
    expected = sorted(m[2] for m in shown if m is not None)
    assert len(expected) == 8, f"pickling.md shows {len(expected)} records, not 8"
    assert sorted(message for _, message in logged) == expected, explain(done)


#: What a user cannot look up: the project's own tracker and working notes.
#: ("ParamSpec" and ``spec_from_file_location`` are not "SPEC": no word boundary.)
_INTERNAL = re.compile(r"\bSPEC\b|\bissues? \d+|(?<![\w&])#\d+\b|seed", re.I)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.name)
def test_docs_speak_to_users_not_about_the_project_history(path: Path) -> None:
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _INTERNAL.search(line)
    ]
    assert not found, "internal references (SPEC, issue numbers, seed):\n" + "\n".join(found)


def test_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "keepachangelog.com" in text
    releases = re.findall(r"^## (.+)$", text, re.M)
    assert releases and releases[0] == "[Unreleased]"
    for release in releases[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", release), release
    kinds = set(re.findall(r"^### (.+)$", text, re.M))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds


@pytest.mark.timeout(120)
def test_the_per_worker_crawler_runs_as_written(tmp_path: Path) -> None:
    """The crawler of docs/per-worker.md fetches every page (its word count is
    right) and each worker made one connection, whatever tasks it ran."""
    code = program(DOCS / "per-worker.md", "## A crawler with one connection per worker")
    with serve_pages(PAGES) as (base, hits):
        done = run_program(code, tmp_path, *(base + page for page in PAGES))
    assert done.returncode == 0, explain(done)
    total = sum(len(body.split()) for body in PAGES.values())
    lines = done.stdout.splitlines()
    assert lines[0] == str(total), explain(done)
    assert re.fullmatch(r"(\d) connections for \1 workers", lines[1]), explain(done)
    assert hits == dict.fromkeys(PAGES, 1), f"requests per page: {dict(hits)}"


@pytest.mark.timeout(180)
def test_the_stop_example_runs_as_written(tmp_path: Path) -> None:
    """docs/faults.md's program: a running task that cancel() leaves alone is
    stopped by nestpool.stop, and asyncio's timeout stops a stop_on_cancel
    task (the program would sleep an hour otherwise)."""
    done = run_program(program(DOCS / "faults.md", "## Stopping a running task"), tmp_path)
    assert done.returncode == 0, explain(done)
    lines = ["finished", "False", "True", "True", "gave up", "rendered"]
    assert done.stdout.split("\n")[:-1] == lines, explain(done)
    assert done.stderr == "", explain(done)


@pytest.mark.timeout(120)
def test_the_asyncio_crawler_runs_as_written(tmp_path: Path) -> None:
    """The async-subtask crawler of docs/asyncio.md serves its own pages,
    fetches each once with every batch in flight at once on its worker's
    event loop, and prints the total the page says."""
    heading = "## A crawler with an async client"
    done = run_program(program(DOCS / "asyncio.md", heading), tmp_path)
    assert done.returncode == 0, explain(done)
    assert done.stdout == "19900\n", explain(done)
    assert done.stderr == "", explain(done)
    assert "It prints `19900`" in (DOCS / "asyncio.md").read_text()


@pytest.mark.timeout(120)
def test_the_async_with_program_runs_as_written(tmp_path: Path) -> None:
    """The program of docs/progress.md's ``async with Pool`` section prints
    what the page shows: the values, then that the block held by a task that
    timed out was left at the timeout (its 30-second task was not waited for)."""
    heading = "### `async with Pool`"
    done = run_program(program(DOCS / "progress.md", heading), tmp_path)
    assert done.returncode == 0, explain(done)
    assert done.stdout == block(DOCS / "progress.md", heading, "text"), explain(done)
    assert done.stderr == "", explain(done)
