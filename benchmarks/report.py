"""Write a results JSON's tables into docs/performance.md.

    python -m benchmarks.report benchmarks/reference/quick.json

replaces what stands between the ``<!-- bench:start -->`` and
``<!-- bench:end -->`` markers of docs/performance.md with the machine, the
versions and every table of that run (as ``benchmarks/run.py`` printed them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks._harness import Check, Result, Row, Table
from benchmarks.run import markdown

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def result_from(data: dict[str, Any]) -> Result:
    """A ``Result`` rebuilt from its JSON form."""
    tables = [
        Table(
            t["title"],
            t["ratio"],
            [Row(**row) for row in t["rows"]],
            list(t["notes"]),
        )
        for t in data["tables"]
    ]
    checks = [Check(**c) for c in data["checks"]]
    return Result(data["name"], data["title"], data["setup"], tables, checks, data["extra"])


def render(document: dict[str, Any], source: str) -> str:
    """The generated section of docs/performance.md."""
    info = document["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        f"Generated from `{source}` (`python -m benchmarks.report {source}`): a "
        f"`{document['size']}` run of {document['repeats']} repeats, {document['date']}, "
        f"{document['seconds']:.0f} s.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} usable cores, {info.get('ram_gb', '?')} GB "
        f"RAM; {info['platform']}",
        f"- Load average at start / end: {info.get('load_average')} / "
        f"{info.get('load_average_end')} (the machine was shared)",
        f"- Python {info['python']}; {versions}",
        "",
    ]
    results = [result_from(r) for r in document["results"]]
    checks = [c for r in results for c in r.checks]
    if checks:
        lines += ["### Targets", "", "| target | this run | met |", "|---|---|---|"]
        lines += [f"| {c.target} | {c.figure} | {'yes' if c.met else '**no**'} |" for c in checks]
        lines.append("")
    for result in results:
        text = markdown(result)
        # The per-workload target lines are in the summary above.
        lines.append(text.split("\n| target | this run | met |")[0].rstrip() + "\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args()
    document = json.loads(args.results.read_text())
    try:
        source = str(args.results.resolve().relative_to(ROOT))
    except ValueError:
        source = str(args.results)
    text = args.doc.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    args.doc.write_text(f"{head}{START}\n{render(document, source)}\n{END}{tail}")
    print(f"updated {args.doc}")


if __name__ == "__main__":
    main()
