"""Paper-style tables (markdown + HTML) and a radar chart comparing any number of results files.

Tables follow the BiMediX2 paper's shapes: Table 2 (medical MCQ, English / Arabic / bilingual
rows), Table 5 (VQA with MultiMedEval's metrics; our improved mode in its own, labelled table),
report generation / summarization, BiMed-MBench (type x domain, per language) and UPHILL
(per presupposition level). Missing numbers print as "-", unavailable metrics as "n/a"
with the reason below the table: never as zero.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..types import RESEARCH_NOTICE
from .mcq import DATASET_TITLES
from .runner import load_results

VQA_TASKS = (("vqa-rad", "VQA-RAD"), ("slake", "SLAKE"), ("path-vqa", "Path-VQA"))
VQA_METRICS = (
    ("bleu1", "BLEU-1"),
    ("closed_accuracy", "Closed Acc"),
    ("open_recall", "Open Recall"),
    ("recall", "Recall"),
    ("open_accuracy", "Open Acc"),
    ("f1", "F1"),
)
TEXT_TASKS = (
    ("mimic-cxr-report", "MIMIC-CXR report generation"),
    ("mimic-iii-summarization", "MIMIC-III summarization"),
)
TEXT_METRICS = (
    ("bleu1", "BLEU-1"),
    ("bleu4", "BLEU-4"),
    ("rougeL", "ROUGE-L"),
    ("meteor", "METEOR"),
    ("f1_radgraph", "F1-RadGraph"),
    ("chexbert_similarity", "CheXbert sim."),
    ("bertscore", "BERTScore"),
    ("radcliq", "RadCliQ-v1 ↓"),
)
RAW_METRICS = frozenset({"radcliq"})  # not a fraction: printed as is (predicted error count, lower is better)
MBENCH_COLUMNS = ("Conversation", "Description", "CXR", "MRI", "Histology", "Gross", "CT")
LANG_NAMES = {"en": "English", "ar": "Arabic", "bilingual": "Bilingual"}


def reference_results_path() -> Path:
    """The shipped BiMediX2 reference results file (see its `note` for what it holds)."""
    return Path(str(resources.files("bimedix2.eval") / "reference" / "bimedix2_paper.json"))


@dataclass(frozen=True)
class Table:
    """One rendered table: title, header, rows of cells (already formatted), footnotes."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


def _pct(value: Any, scale: float = 100.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def _label(results: dict[str, Any]) -> str:
    return str(results.get("label") or results.get("model"))


def mcq_table(all_results: Sequence[dict[str, Any]]) -> Table | None:
    datasets = list(DATASET_TITLES)
    rows, present = [], False
    for res in all_results:
        metrics = res["tasks"].get("mcq", {}).get("metrics", {})
        for lang in ("en", "ar", "bilingual"):
            if lang in metrics:
                present = True
                per = metrics[lang]
                rows.append(
                    (_label(res), LANG_NAMES[lang], *(_pct(per.get(d)) for d in datasets), _pct(per.get("average")))
                )
    if not present:
        return None
    return Table(
        "Medical MCQ accuracy (%) - paper Table 2 shape",
        ("Model", "Language", *DATASET_TITLES.values(), "Average"),
        tuple(rows),
        ("Average is over the datasets present in that row; '-' = not run.",),
    )


def vqa_table(all_results: Sequence[dict[str, Any]], mode: str) -> Table | None:
    rows, present = [], False
    for res in all_results:
        cells, mine = [_label(res)], False
        for task, _ in VQA_TASKS:
            metrics = res["tasks"].get(task, {}).get("metrics", {}).get(mode)
            mine |= metrics is not None
            cells += [_pct((metrics or {}).get(key)) for key, _ in VQA_METRICS]
        if mine:
            rows.append(tuple(cells))
            present = True
    if not present:
        return None
    columns = ("Model", *(f"{title} {name}" for _, title in VQA_TASKS for _, name in VQA_METRICS))
    if mode == "multimedeval":
        return Table(
            "Medical VQA (%) - MultiMedEval metrics, paper Table 5 shape",
            columns,
            tuple(rows),
            ("Closed = gold answer is yes/no (MultiMedEval's rule); comparable with the paper.",),
        )
    return Table(
        "Medical VQA (%) - IMPROVED mode (ours, not comparable with the paper)",
        columns,
        tuple(rows),
        (
            "Closed = the dataset's answer_type is CLOSED; Arabic normalised (diacritics, tatweel, "
            "alef/yaa/taa-marbuta, Arabic-Indic digits).",
        ),
    )


def text_table(all_results: Sequence[dict[str, Any]]) -> Table | None:
    rows, notes = [], []
    for res in all_results:
        for task, title in TEXT_TASKS:
            entry = res["tasks"].get(task)
            if not entry:
                continue
            metrics, unavailable = entry.get("metrics", {}), entry.get("unavailable", {})
            cells = [_label(res), title]
            for key, _ in TEXT_METRICS:
                scale = 1.0 if key in RAW_METRICS else 100.0
                cells.append("n/a" if key in unavailable else _pct(metrics.get(key), scale, 3 if scale == 1 else 1))
            rows.append(tuple(cells))
            notes += [f"{_label(res)} / {title}: {key} {why}" for key, why in unavailable.items()]
    if not rows:
        return None
    return Table(
        "Report generation and summarization (%; RadCliQ-v1 raw, lower is better)",
        ("Model", "Task", *(n for _, n in TEXT_METRICS)),
        tuple(rows),
        tuple(dict.fromkeys(notes)),
    )


def mbench_table(all_results: Sequence[dict[str, Any]]) -> Table | None:
    rows = []
    for res in all_results:
        for lang, m in res["tasks"].get("bimed-mbench", {}).get("metrics", {}).items():
            by = {**m.get("by_type", {}), **m.get("by_domain", {})}
            rows.append(
                (
                    _label(res),
                    LANG_NAMES.get(lang, lang),
                    *(_pct(by.get(c), 1) for c in MBENCH_COLUMNS),
                    _pct(m.get("overall"), 1),
                )
            )
    if not rows:
        return None
    return Table(
        "BiMed-MBench relative score (candidate / reference x 100)",
        ("Model", "Language", *MBENCH_COLUMNS, "Overall"),
        tuple(rows),
        ("Relative score = mean over samples of judge(candidate) / judge(reference) x 100.",),
    )


def uphill_table(all_results: Sequence[dict[str, Any]]) -> Table | None:
    rows = []
    for res in all_results:
        for lang, m in res["tasks"].get("uphill", {}).get("metrics", {}).items():
            per = m.get("accuracy_per_level", {})
            rows.append(
                (
                    _label(res),
                    LANG_NAMES.get(lang, lang),
                    *(_pct(per.get(str(i))) for i in range(5)),
                    _pct(m.get("accuracy")),
                    _pct(m.get("consistency")),
                )
            )
    if not rows:
        return None
    return Table(
        "UPHILL factual accuracy (%) per presupposition level",
        ("Model", "Language", "Level 0", "Level 1", "Level 2", "Level 3", "Level 4", "Overall", "Consistency"),
        tuple(rows),
        ("Consistency = share of claims with the same stance at all five levels.",),
    )


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
    """Every table that has at least one number."""
    tables = [
        mcq_table(all_results),
        vqa_table(all_results, "multimedeval"),
        vqa_table(all_results, "improved"),
        text_table(all_results),
        mbench_table(all_results),
        uphill_table(all_results),
    ]
    return [t for t in tables if t is not None]


def radar_axes(all_results: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{axis: {model label: value 0-100}} over categories x languages (like the paper's Figure 1)."""
    axes: dict[str, dict[str, float]] = {}

    def put(axis: str, label: str, value: Any, scale: float = 100.0) -> None:
        if value is not None:
            axes.setdefault(axis, {})[label] = float(value) * scale

    for res in all_results:
        label, tasks = _label(res), res["tasks"]
        for lang, m in tasks.get("bimed-mbench", {}).get("metrics", {}).items():
            for key, value in {**m.get("by_type", {}), **m.get("by_domain", {})}.items():
                put(f"{key} ({lang.upper()})", label, value, 1.0)
        for lang, per in tasks.get("mcq", {}).get("metrics", {}).items():
            put(f"MCQ ({LANG_NAMES.get(lang, lang)})", label, per.get("average"))
        for task, title in VQA_TASKS:
            put(
                f"{title} closed acc",
                label,
                tasks.get(task, {}).get("metrics", {}).get("multimedeval", {}).get("closed_accuracy"),
            )
        for lang, m in tasks.get("uphill", {}).get("metrics", {}).items():
            put(f"UPHILL ({lang.upper()})", label, m.get("accuracy"))
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


def to_markdown(tables: Sequence[Table], sources: Sequence[str], chart: str | None) -> str:
    lines = [
        "# Evaluation report",
        "",
        f"> {RESEARCH_NOTICE}",
        "",
        "Results files: " + ", ".join(f"`{s}`" for s in sources),
        "",
    ]
    for t in tables:
        lines += [f"## {t.title}", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in t.rows]
        lines += [""] + [f"- {n}" for n in t.notes] + [""]
    if chart:
        lines += ["## Radar chart", "", f"![radar]({chart})", ""]
    return "\n".join(lines)


def to_html(tables: Sequence[Table], sources: Sequence[str], chart: str | None) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:.5em}"
        "td,th{border:1px solid #bbb;padding:4px 8px;text-align:center}th{background:#eee}"
        ".notice{background:#fff3cd;padding:.5em}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f"<p class='notice' dir='auto'>{e(RESEARCH_NOTICE)}</p>",
        "<p>Results files: " + ", ".join(f"<code>{e(s)}</code>" for s in sources) + "</p>",
    ]
    for t in tables:
        parts.append(
            f"<h2>{e(t.title)}</h2><table><thead><tr>"
            + "".join(f"<th>{e(c)}</th>" for c in t.columns)
            + "</tr></thead><tbody>"
        )
        parts += ["<tr>" + "".join(f"<td dir='auto'>{e(c)}</td>" for c in r) + "</tr>" for r in t.rows]
        parts.append("</tbody></table>" + "".join(f"<p><small>{e(n)}</small></p>" for n in t.notes))
    if chart:
        parts.append(f"<h2>Radar chart</h2><img src='{e(chart)}' alt='radar chart' width='640'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_report(result_files: Sequence[Path], out_dir: Path, with_reference: bool = False) -> dict[str, Path]:
    """Write report.md, report.html and radar.png (when >= 3 axes) into `out_dir`."""
    files = [Path(p) for p in result_files] + ([reference_results_path()] if with_reference else [])
    if not files:
        from ..errors import EvalDataError

        raise EvalDataError("no results files given: pass one or more results.json paths")
    all_results = unique_labels([load_results(p) for p in files])
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build_tables(all_results)
    chart = radar_chart(all_results, out_dir / "radar.png")
    chart_name = chart.name if chart else None
    sources = [str(p) for p in files]
    out = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    out["markdown"].write_text(to_markdown(tables, sources, chart_name), encoding="utf-8")
    out["html"].write_text(to_html(tables, sources, chart_name), encoding="utf-8")
    if chart:
        out["radar"] = chart
    return out
