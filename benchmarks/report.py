"""Write a results JSON's tables and charts into docs/performance.md.

    python -m benchmarks.report benchmarks/reference/full.json

replaces what stands between the ``<!-- bench:start -->`` and
``<!-- bench:end -->`` markers of docs/performance.md with the machine, the
versions and every table of that run (as ``benchmarks/run.py`` printed them),
each workload opened by a chart of its first table, drawn into
``docs/images/bench-<workload>.svg`` (matplotlib, from the ``bench`` extra):
every engine's time as a multiple of the table's reference (the ideal, or
nestpool), minimum and median, nestpool's rows highlighted.
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
IMAGES = ROOT / "docs" / "images"

#: the docs theme's indigo for nestpool, greys for the others
NESTPOOL_COLORS = ("#3f51b5", "#9fa8da")
OTHER_COLORS = ("#616161", "#bdbdbd")


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


def chart_rows(table: Table) -> tuple[list[tuple[str, float, float]], str]:
    """``([(label, min, median)], reference)``: each row's time as a multiple
    of the table's reference, lower is better.

    A table whose ratios are time / ideal (or / nestpool's first row) gives
    them as they are. One that pairs each nestpool row with the baseline
    after it and gives the baseline's time / nestpool's on the nestpool row
    (hop, latency) gives nestpool 1.00 and the baseline that ratio; a table
    of baseline / nestpool (tiny) already reads as the baseline's multiple.
    """
    text = table.ratio.lower()
    rows: list[tuple[str, float, float]] = []
    if "ideal" in text or "floor" in text:
        reference = "the ideal" if "ideal" in text else "the measured CPU floor"
    else:
        reference = "nestpool"
    pending: Row | None = None
    for row in table.rows:
        if row.ratio_min is None or row.ratio_median is None:
            if pending is not None and pending.ratio_min and pending.ratio_median:
                rows.append((row.label, pending.ratio_min, pending.ratio_median))
                pending = None
            continue
        if any(r.ratio_min is None for r in table.rows):
            rows.append((row.label, 1.0, 1.0))  # a pair's nestpool row: the reference
            pending = row
        else:
            rows.append((row.label, row.ratio_min, row.ratio_median))
    return rows, reference


def _is_nestpool(label: str) -> bool:
    return label.startswith("nestpool")


def draw_chart(result: Result, path: Path) -> None:
    """Draw ``result``'s first table as a horizontal bar chart into ``path`` (SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.tables[0]
    rows, reference = chart_rows(table)
    # Text as paths: drawn as laid out, whatever fonts the reader has.
    matplotlib.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "nestpool"})
    height = 1.6 + 0.42 * len(rows)
    # About the width of the docs column, so text keeps its size there.
    fig, ax = plt.subplots(figsize=(7.5, height))
    positions = list(range(len(rows)))[::-1]
    bar = 0.38
    largest = max(max(low, mid) for _, low, mid in rows)
    smallest = min(min(low, mid) for _, low, mid in rows)
    log = largest / max(smallest, 1e-9) > 30
    for y, (label, low, mid) in zip(positions, rows, strict=True):
        dark, light = NESTPOOL_COLORS if _is_nestpool(label) else OTHER_COLORS
        ax.barh(y + bar / 2, low, height=bar, color=dark)
        ax.barh(y - bar / 2, mid, height=bar, color=light)
        for offset, value in ((bar / 2, low), (-bar / 2, mid)):
            ax.text(
                value * (1.03 if log else 1) + (0 if log else largest * 0.01),
                y + offset,
                f"{value:.2f}x" if value < 100 else f"{value:,.0f}x",
                va="center",
                fontsize=8,
            )
    ax.set_yticks(positions)
    ax.set_yticklabels([label for label, _, _ in rows], fontsize=8.5)
    for tick, (label, _, _) in zip(ax.get_yticklabels(), rows, strict=True):
        if _is_nestpool(label):
            tick.set_fontweight("bold")
            tick.set_color(NESTPOOL_COLORS[0])
    ax.axvline(1.0, color="#000000", linestyle="--", linewidth=1)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(0.5, smallest * 0.8), largest * 3)
    else:
        ax.set_xlim(0, largest * 1.15)
    quantity = "memory" if table.rows[0].unit.endswith("B") else "time"
    ax.set_xlabel(
        f"{quantity} as a multiple of {reference} (the dashed line)\n"
        f"lower is better{'; log scale' if log else ''}",
        fontsize=9,
        loc="right",  # the labels leave room on the left, not on the right
    )
    legend = [
        plt.Rectangle((0, 0), 1, 1, color=NESTPOOL_COLORS[0]),
        plt.Rectangle((0, 0), 1, 1, color=NESTPOOL_COLORS[1]),
        plt.Rectangle((0, 0), 1, 1, color=OTHER_COLORS[0]),
        plt.Rectangle((0, 0), 1, 1, color=OTHER_COLORS[1]),
    ]
    fig.legend(
        legend,
        ["nestpool, min", "nestpool, median", "others, min", "others, median"],
        fontsize=8,
        loc="lower center",
        ncol=4,
        frameon=False,
    )
    fig.suptitle(f"{result.title}\n{table.title}", fontsize=10, x=0.01, ha="left")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)


def chart_path(result: Result) -> Path:
    return IMAGES / f"bench-{result.name}.svg"


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
        # The chart goes after the workload's heading and setup line.
        heading, _, rest = markdown(result).partition("\n\n")
        setup, _, tables = rest.partition("\n\n")
        image = chart_path(result).relative_to(ROOT / "docs")
        alt = f"{result.title}: each engine against {chart_rows(result.tables[0])[1]}"
        text = f"{heading}\n\n{setup}\n\n![{alt}]({image})\n\n{tables}"
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
    for result in map(result_from, document["results"]):
        draw_chart(result, chart_path(result))
        print(f"drew {chart_path(result).relative_to(ROOT)}")
    text = args.doc.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    args.doc.write_text(f"{head}{START}\n{render(document, source)}\n{END}{tail}")
    print(f"updated {args.doc}")


if __name__ == "__main__":
    main()
