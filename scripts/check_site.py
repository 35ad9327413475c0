"""Check the built documentation site as a reader's browser would show it.

    python scripts/check_site.py [site]          # after scripts/docs.sh

``mkdocs build --strict`` catches broken links and docstrings it cannot
parse, not a page that builds and then shows its seams. This reads the HTML
in ``site/`` (standard library only) and fails, naming page and place, when:

- a Mermaid diagram would show as its source: a ``mermaid`` block that
  Markdown left as a plain code block, or a page with a diagram that does not
  load the site's own copy of Mermaid (a reader offline, or behind a firewall,
  would see the source; a CDN is never used);
- a docstring example is not shown as code: a ``>>>`` line outside a code
  block (Markdown reads ``>>>`` as nested block quotes, run together on one
  line), or a block quote nested in a block quote;
- the API reference shows a private name: an underscored name (a dunder
  aside) anywhere in it, signatures included; a cross-reference into a
  private module for a name that ``nestpool`` does not export (a type
  variable aside) or into wrapt; a public name not shown exactly once; or an
  object that is not public;
- the API reference is not grouped as users look for it (decorators, Pool,
  collating values, errors).

tests/test_check_site.py shows each check failing on the HTML that the site
produced before it was fixed.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the API reference's sections, in order
API_SECTIONS = ["Decorators", "Pool", "One resource per worker", "Collating values", "Errors"]
#: type variables and ParamSpecs may appear in signatures (``MapIterator[R]``)
TYPE_VARIABLES = re.compile(r"^(P|P2|R|S|T|A[1-5])$")
_UNDERSCORED = re.compile(r"(?<![\w.])_[A-Za-z]\w*")
_DUNDER = re.compile(r"^__\w+__$")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Page:
    """What one HTML page shows, as the checks need it."""

    path: str
    #: (text, inside <pre>/<code>, inside the page's <article>) of each text node
    texts: list[tuple[str, bool, bool]] = field(default_factory=list)
    #: src of each <script>
    scripts: list[str] = field(default_factory=list)
    #: the class attribute of each element carrying "mermaid" or "language-mermaid"
    mermaid_blocks: list[str] = field(default_factory=list)
    #: number of <blockquote> directly inside another
    nested_quotes: int = 0
    #: title attributes of cross-references inside the article
    titles: list[str] = field(default_factory=list)
    #: id of each heading inside the article
    heading_ids: list[str] = field(default_factory=list)
    #: text of each <h2> inside the article
    h2: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[str] = []
        self.code = 0
        self.article = 0
        self.h2: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "").split()
        if tag == "script" and attributes.get("src"):
            self.page.scripts.append(attributes["src"])
        if "mermaid" in classes or "language-mermaid" in classes:
            self.page.mermaid_blocks.append(" ".join(classes))
        if tag == "blockquote" and self.stack and self.stack[-1] == "blockquote":
            self.page.nested_quotes += 1
        if self.article:
            if "title" in attributes and tag in ("a", "span"):
                self.page.titles.append(attributes["title"])
            if tag in ("h1", "h2", "h3", "h4", "h5") and attributes.get("id"):
                self.page.heading_ids.append(attributes["id"])
            if tag == "h2":
                self.h2 = []
        if tag in _VOID:
            return
        self.stack.append(tag)
        if tag in ("pre", "code"):
            self.code += 1
        if tag == "article":
            self.article += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack:
            open_tag = self.stack.pop()
            if open_tag in ("pre", "code"):
                self.code -= 1
            if open_tag == "article":
                self.article -= 1
            if open_tag == "h2" and self.h2 is not None:
                self.page.h2.append("".join(self.h2).replace("¶", "").strip())
                self.h2 = None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.h2 is not None:
            self.h2.append(data)
        if data.strip():
            self.page.texts.append((data, self.code > 0, self.article > 0))


def read_page(path: Path, site: Path) -> Page:
    """Parse one built page."""
    page = Page(str(path.relative_to(site)))
    _Reader(page).feed(path.read_text(encoding="utf-8"))
    return page


def _script_file(page_path: Path, src: str) -> Path:
    return (page_path.parent / src.split("?")[0]).resolve()


def check_mermaid(page: Page, page_path: Path) -> Iterator[str]:
    """A diagram renders: a real mermaid block, and Mermaid served by the site."""
    for classes in page.mermaid_blocks:
        if "language-mermaid" in classes.split():
            yield f"{page.path}: a mermaid block is a plain code block (its source shows)"
    if not any("mermaid" in c.split() for c in page.mermaid_blocks):
        return
    local = [
        src
        for src in page.scripts
        if "mermaid" in src and "://" not in src and not src.startswith("//")
    ]
    if not local:
        yield (
            f"{page.path}: a diagram, but the page loads no Mermaid of its own "
            "(the theme would fetch it from a CDN; offline its source shows)"
        )
    for src in local:
        script = _script_file(page_path, src)
        if not script.is_file() or script.stat().st_size < 100_000:
            yield f"{page.path}: {src} is missing or not Mermaid"


def check_examples(page: Page) -> Iterator[str]:
    """Doctests are code, not quotes."""
    if page.nested_quotes:
        yield f"{page.path}: {page.nested_quotes} block quote(s) nested in a block quote"
    for text, in_code, _in_article in page.texts:
        if not in_code and re.search(r"(^|\n)\s*>>>", text):
            line = text.strip().splitlines()[0][:60]
            yield f"{page.path}: a doctest line outside a code block: {line!r}"


def check_reference(page: Page, public: set[str]) -> Iterator[str]:
    """The API reference: public names only, each once, in their groups."""
    if page.h2 != API_SECTIONS:
        yield f"{page.path}: sections {page.h2}, expected {API_SECTIONS}"
    for text, _in_code, in_article in page.texts:
        if not in_article:
            continue
        # Signatures and examples included: a default such as `_MISSING` is
        # as private as a base class.
        for name in _UNDERSCORED.findall(text):
            if not _DUNDER.match(name):
                yield f"{page.path}: private name {name!r} shown: {text.strip()[:60]!r}"
    for title in sorted(set(page.titles)):
        if title.startswith("wrapt."):
            yield f"{page.path}: shows {title}, the proxy machinery behind the decorators"
        match = re.match(r"^(?:\S+ \()?nestpool\.(_\w+)\.([\w.]+)\)?$", title)
        if match is None:
            continue
        top = match[2].split(".")[0]
        if top not in public and not TYPE_VARIABLES.match(top):
            yield f"{page.path}: refers to nestpool's internal {match[1]}.{match[2]}"
    objects = [h for h in page.heading_ids if h.startswith("nestpool.")]
    top_level = [h.split(".")[1] for h in objects if h.count(".") == 1]
    for name in sorted(public - {"__version__"}):
        count = top_level.count(name)
        if count != 1:
            yield f"{page.path}: nestpool.{name} is shown {count} times, expected once"
    for name in sorted(set(top_level) - public):
        yield f"{page.path}: nestpool.{name} is shown but is not public"
    for heading in objects:
        if any(part.startswith("_") and not _DUNDER.match(part) for part in heading.split(".")):
            yield f"{page.path}: private member {heading} is shown"


def check_site(site: Path, public: set[str]) -> list[str]:
    """Every problem found in the built site."""
    problems: list[str] = []
    pages = sorted(site.rglob("*.html"))
    if not pages:
        return [f"{site}: no HTML pages (run scripts/docs.sh first)"]
    reference = site / "api" / "index.html"
    if not reference.is_file():
        problems.append(f"{site}: no API reference page (api/index.html)")
    for path in pages:
        if path.name == "404.html":
            continue
        page = read_page(path, site)
        problems += check_mermaid(page, path)
        problems += check_examples(page)
        if path == reference:
            problems += check_reference(page, public)
    return problems


def public_names() -> set[str]:
    """``nestpool.__all__``, from the source tree."""
    sys.path.insert(0, str(ROOT))
    import nestpool

    return set(nestpool.__all__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", type=Path, default=ROOT / "site")
    args = parser.parse_args(argv)
    problems = check_site(args.site, public_names())
    for problem in problems:
        print(problem, file=sys.stderr)
    pages = len(list(args.site.rglob("*.html")))
    print(f"check_site: {pages} pages, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
