"""Report tables (markdown + HTML) and a radar chart comparing any number of results files.

Each evaluation kind supplies its own tables (in the paper's shapes for the paper's tasks) and
radar axes; this module groups every results file's entries by kind, asks each kind, and renders.
Missing numbers print as "-", unavailable metrics as "n/a" with the reason below the table:
never as zero.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import atomic_write_text
from ..types import RESEARCH_NOTICE
from .kinds import EvalKind, all_kinds, get_kind
from .results import load_results
from .side_by_side import side_by_side_table
from .tables import ModelResults, Table
from .tasks import builtin_task_kinds

__all__ = [
    "Table",
    "build_tables",
    "radar_axes",
    "radar_chart",
    "reference_results_path",
    "render_report",
    "results_file",
]


def reference_results_path() -> Path:
    """The shipped BiMediX2 reference results file (see its `note` for what it holds)."""
    return Path(str(resources.files("bimedix2.eval") / "reference" / "bimedix2_paper.json"))


def results_file(path: Path) -> Path:
    """A run's results.json: the path itself, or `<path>/results.json` for an `eval run --out` folder."""
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


def _label(results: dict[str, Any]) -> str:
    return str(results.get("label") or results.get("model"))


def _kind_of(task: str, entry: dict[str, Any]) -> EvalKind | None:
    """The kind that wrote an entry: its `kind` tag, else the built-in task of that name; None if unknown."""
    name = entry.get("kind") or builtin_task_kinds().get(task)
    try:
        return get_kind(name) if name else None
    except ConfigError:
        return None


def by_kind(all_results: Sequence[dict[str, Any]]) -> list[tuple[EvalKind, list[ModelResults]]]:
    """For each registered kind (report order): every results file holding only that kind's entries."""
    out = []
    for kind in all_kinds():
        views = [
            ModelResults(_label(res), {t: e for t, e in res["tasks"].items() if _kind_of(t, e) is kind})
            for res in all_results
        ]
        out.append((kind, views))
    return out


def unique_labels(all_results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies whose labels are unique ("name", "name #2", ...) so two runs never merge."""
    seen: dict[str, int] = {}
    out = []
    for res in all_results:
        label = _label(res)
        seen[label] = seen.get(label, 0) + 1
        out.append({**res, "label": label if seen[label] == 1 else f"{label} #{seen[label]}"})
    return out


def build_tables(all_results: Sequence[dict[str, Any]]) -> list[Table]:
    """Every table that has at least one number, kind by kind."""
    return [table for kind, views in by_kind(all_results) for table in kind.tables(views)]


def radar_axes(all_results: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{axis: {model label: value 0-100}} over categories x languages (like the paper's Figure 1)."""
    axes: dict[str, dict[str, float]] = {}
    grouped = by_kind(all_results)
    for i in range(len(all_results)):
        for kind, views in grouped:
            for axis, value in kind.radar_axes(views[i]):
                axes.setdefault(axis, {})[views[i].label] = value
    return axes


def radar_chart(all_results: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Write the radar PNG (matplotlib, Agg); None when fewer than 3 axes have numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = radar_axes(all_results)
    names = list(axes)
    if len(names) < 3:
        return None
    angles = [2 * math.pi * i / len(names) for i in range(len(names))]
    fig = plt.figure(figsize=(8, 8))
    ax = fig.add_subplot(polar=True)
    for res in all_results:
        label = _label(res)
        values = [axes[n].get(label, float("nan")) for n in names]  # missing -> gap, never 0
        ax.plot([*angles, angles[0]], [*values, values[0]], marker="o", label=label)
        if not any(math.isnan(v) for v in values):  # a filled area only where every axis has a number
            ax.fill([*angles, angles[0]], [*values, values[0]], alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylim(0, max(100.0, *(v for a in axes.values() for v in a.values())))
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    ax.set_title("BiMediX2 toolkit evaluation (research use only)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def file_protocol(results: dict[str, Any]) -> str:
    """A results file's protocol: its own `protocol`, else its entries'; a published-numbers file
    (one with a top-level `source`, as the shipped reference) reads "published"; else "not recorded"."""
    found = {str(e["protocol"]) for e in results.get("tasks", {}).values() if e.get("protocol")}
    derived = found.pop() if len(found) == 1 else ("mixed" if found else "")
    return str(results.get("protocol") or derived or ("published" if results.get("source") else "not recorded"))


def protocol_line(labels: Sequence[str], protocols: Sequence[str]) -> str:
    """One line naming each results file's protocol (paper: the released settings; toolkit: ours)."""
    return "Protocol (paper = the released code's settings, toolkit = ours): " + ", ".join(
        f"{label}: {protocol}" for label, protocol in zip(labels, protocols, strict=True)
    )


def interval_line(all_results: Sequence[dict[str, Any]]) -> str:
    """A line explaining "x [lo, hi]" cells when any entry carries bootstrap intervals; "" otherwise."""
    how = {
        (b.get("n_resamples"), b.get("seed"))
        for res in all_results
        for e in res.get("tasks", {}).values()
        if e.get("ci95") and isinstance(b := e.get("bootstrap"), dict)
    }
    if not how:
        return ""
    runs = ", ".join(f"{n} resamples, seed {seed}" for n, seed in sorted(how, key=str))
    return f"Cells `x [lo, hi]`: the value and its 95% percentile-bootstrap interval over samples ({runs})."


def _md_row(cells: Sequence[str]) -> str:
    """One markdown table row; a `|` inside a cell (e.g. in a task title) is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def to_markdown(tables: Sequence[Table], sources: Sequence[str], chart: str | None, protocols: str = "") -> str:
    lines = [
        "# Evaluation report",
        "",
        f"> {RESEARCH_NOTICE}",
        "",
        "Results files: " + ", ".join(f"`{s}`" for s in sources),
        "",
        *([protocols, ""] if protocols else []),
    ]
    for t in tables:
        lines += [f"## {t.title}", "", _md_row(t.columns), "|" + "---|" * len(t.columns)]
        lines += [_md_row(r) for r in t.rows]
        lines += [""] + [f"- {n}" for n in t.notes] + [""]
    if chart:
        lines += ["## Radar chart", "", f"![radar]({chart})", ""]
    return "\n".join(lines)


def to_html(tables: Sequence[Table], sources: Sequence[str], chart: str | None, protocols: str = "") -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en' dir='ltr'><head><meta charset='utf-8'><title>Evaluation report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:.5em}"
        "td,th{border:1px solid #bbb;padding:4px 8px;text-align:center}th{background:#eee}"
        ".notice{background:#fff3cd;padding:.5em}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f"<p class='notice' dir='auto'>{e(RESEARCH_NOTICE)}</p>",
        "<p>Results files: " + ", ".join(f"<code>{e(s)}</code>" for s in sources) + "</p>",
        *([f"<p dir='auto'>{e(protocols)}</p>"] if protocols else []),
    ]
    for t in tables:
        parts.append(
            f"<h2>{e(t.title)}</h2><table><thead><tr>"
            + "".join(f"<th dir='auto'>{e(c)}</th>" for c in t.columns)
            + "</tr></thead><tbody>"
        )
        # dir='auto' + <bdi>: an Arabic task name or answer keeps its own direction inside an LTR table
        parts += ["<tr>" + "".join(f"<td dir='auto'><bdi>{e(c)}</bdi></td>" for c in r) + "</tr>" for r in t.rows]
        parts.append("</tbody></table>" + "".join(f"<p><small>{e(n)}</small></p>" for n in t.notes))
    if chart:
        parts.append(f"<h2>Radar chart</h2><img src='{e(chart)}' alt='radar chart' width='640'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def paper_averages_table(runs: Sequence[dict[str, Any]], reference: dict[str, Any] | None) -> Table | None:
    """The "Average" column of each paper table the runs touch, computed as the paper does (the plain mean of
    the table's cells), beside the paper's printed average; None when no run has a paper table's task."""
    from .metrics.averages import averages_notes, averages_rows

    printed = (reference or {}).get("averages") if reference is not None else None
    rows = averages_rows(runs, printed)
    if not rows:
        return None
    labels = [_label(r) for r in runs]
    columns = ("table", *labels, *(["paper (printed)"] if printed is not None else []))
    return Table("Paper-style averages (mean of each table's cells)", columns, rows, averages_notes(runs, labels))


def render_report(
    result_files: Sequence[Path], out_dir: Path, with_reference: bool = False, paper_column: bool = True
) -> dict[str, Path]:
    """Write report.md, report.html and radar.png (when >= 3 axes) into `out_dir`.

    `result_files`: results.json files or `eval run --out` folders. The report opens with the side-by-side
    table (one column per run; with `paper_column`, the shipped paper numbers as a reported column), then
    each kind's tables in the paper's shapes (`with_reference`: the paper's numbers as rows there too).
    """
    measured = [results_file(p) for p in result_files]
    files = measured + ([reference_results_path()] if with_reference else [])
    if not files:
        from ..errors import EvalDataError

        raise EvalDataError("no results files given: pass one or more results.json paths or run folders")
    all_results = unique_labels([load_results(p) for p in files])
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = load_results(reference_results_path()) if paper_column else None
    side = side_by_side_table(all_results[: len(measured)], reference)
    averages = paper_averages_table(all_results[: len(measured)], reference)
    tables = ([side] if side else []) + ([averages] if averages else []) + build_tables(all_results)
    chart = radar_chart(all_results, out_dir / "radar.png")
    chart_name = chart.name if chart else None
    sources = [str(p) for p in files]
    protocols = protocol_line([_label(r) for r in all_results], [file_protocol(r) for r in all_results])
    intervals = interval_line(all_results)
    protocols = f"{protocols}\n\n{intervals}" if intervals else protocols
    out = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    atomic_write_text(out["markdown"], to_markdown(tables, sources, chart_name, protocols))
    atomic_write_text(out["html"], to_html(tables, sources, chart_name, protocols))
    if chart:
        out["radar"] = chart
    return out
