"""scripts/check_site.py catches each seam the built site once showed.

Each case is the HTML that mkdocs produced before the fix (trimmed to the
part that matters) next to what it produces now; the check must fail the
first and pass the second. .ci/run runs the script itself on the real site
after scripts/docs.sh.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import nestpool

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "scripts" / "check_site.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check_site = _script()
PUBLIC = set(nestpool.__all__)

_SECTIONS = "".join(
    f'<h2 id="s{i}">{name}<a class="headerlink">¶</a></h2>'
    for i, name in enumerate(check_site.API_SECTIONS)
)
_HEADINGS = "".join(
    f'<h3 id="nestpool.{name}"><code>{name}</code></h3>'
    for name in sorted(PUBLIC - {"__version__"})
)
GOOD_REFERENCE = f"<article>{_SECTIONS}{_HEADINGS}</article>"
MERMAID_JS = '<script src="../javascripts/vendor/mermaid.min.js"></script>'


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    site = tmp_path / "site"
    for name, body in {"api/index.html": GOOD_REFERENCE, **pages}.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html><body>{body}</body></html>")
    script = site / "javascripts" / "vendor" / "mermaid.min.js"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("x" * 200_000)
    return site


def _problems(tmp_path: Path, pages: dict[str, str]) -> list[str]:
    return check_site.check_site(_site(tmp_path, pages), PUBLIC)


def test_a_good_site_passes(tmp_path: Path) -> None:
    diagram = f'<article><pre class="mermaid"><code>flowchart LR</code></pre></article>{MERMAID_JS}'
    assert _problems(tmp_path, {"routing/index.html": diagram}) == []


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        # The theme fetches Mermaid from a CDN: offline, the source shows.
        (
            '<article><pre class="mermaid"><code>flowchart LR</code></pre></article>',
            "loads no Mermaid of its own",
        ),
        (
            '<pre class="mermaid"><code>x</code></pre>'
            '<script src="https://unpkg.com/mermaid@11/dist/mermaid.min.js"></script>',
            "loads no Mermaid of its own",
        ),
        # Without the superfences custom fence: a plain code block.
        ('<pre><code class="language-mermaid">flowchart LR</code></pre>', "plain code block"),
    ],
)
def test_a_diagram_that_would_show_its_source_fails(
    tmp_path: Path, page: str, expected: str
) -> None:
    problems = _problems(tmp_path, {"routing/index.html": page})
    assert any(expected in p for p in problems), problems


def test_block_quoted_doctests_fail(tmp_path: Path) -> None:
    # What an `Example:` admonition made of `>>> crunch.task_name`.
    quoted = (
        "<article><blockquote><blockquote><blockquote><p>crunch.task_name\n'crunch'</p>"
        "</blockquote></blockquote></blockquote></article>"
    )
    problems = _problems(tmp_path, {"faults/index.html": quoted})
    assert any("nested in a block quote" in p for p in problems), problems
    loose = "<article><p>&gt;&gt;&gt; crunch.task_name</p></article>"
    problems = _problems(tmp_path, {"faults/index.html": loose})
    assert any("doctest line outside a code block" in p for p in problems), problems
    as_code = '<article><pre><code class="language-pycon">&gt;&gt;&gt; x</code></pre></article>'
    assert _problems(tmp_path, {"faults/index.html": as_code}) == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # ProcessTask's bases, as the reference listed them.
        (
            '<p>Bases: <code><span title="nestpool._signatures.DecoratedFunction">'
            'DecoratedFunction</span></code>, <code><span title="nestpool._api._TaskMixin">'
            "_TaskMixin</span></code>, <code>"
            '<span title="wrapt.FunctionWrapper">FunctionWrapper</span></code></p>',
            "_TaskMixin",
        ),
        (
            '<code><span title="wrapt.FunctionWrapper">FunctionWrapper</span></code>',
            "proxy machinery",
        ),
        (
            '<code><span title="nestpool._signatures.DecoratedFunction">D</span></code>',
            "internal _signatures.DecoratedFunction",
        ),
        # A private default in a signature.
        ("<pre><code>process_task(fn: Any = _NO_FUNCTION, /)</code></pre>", "_NO_FUNCTION"),
        ('<h4 id="nestpool.Pool._submit_call">_submit_call</h4>', "private member"),
        ('<h3 id="nestpool.DecoratedFunction">x</h3>', "not public"),
        (f'<h3 id="nestpool.{sorted(PUBLIC)[0]}">again</h3>', "2 times"),
    ],
)
def test_a_private_name_in_the_reference_fails(tmp_path: Path, extra: str, expected: str) -> None:
    page = GOOD_REFERENCE.replace("</article>", f"{extra}</article>")
    problems = _problems(tmp_path, {"api/index.html": page})
    assert any(expected in p for p in problems), problems


def test_type_variables_and_public_names_pass(tmp_path: Path) -> None:
    fine = (
        '<code><span title="nestpool._typing.R">R</span>'
        '<span title="nestpool._map_iterator.MapIterator">MapIterator</span>'
        "crunch.__wrapped__</code>"
    )
    page = GOOD_REFERENCE.replace("</article>", f"{fine}</article>")
    assert _problems(tmp_path, {"api/index.html": page}) == []


def test_an_ungrouped_reference_fails(tmp_path: Path) -> None:
    page = GOOD_REFERENCE.replace(">Pool<a", ">Executors<a")
    problems = _problems(tmp_path, {"api/index.html": page})
    assert any("sections" in p for p in problems), problems
