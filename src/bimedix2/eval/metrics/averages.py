"""The "Average" columns of the BiMediX2 paper's tables (arXiv:2412.07769), computed as the paper computes them.

Each average is the plain mean of that table's printed cells for one model (checked against the
paper's own printed averages from its printed cells: tests/unit/eval/test_eval_paper_averages.py):

- Table 2 (clinical LLM benchmark): the 10 MCQ columns (six medical MMLU subjects, MedMCQA, MedQA,
  USMLE, PubMedQA), 70.39 -> printed 70.4 for BiMediX2 8B.
- Table 5 (medical VQA, MultiMedEval): the 18 cells, six MultiMedEval metrics on each of VQA-RAD,
  SLAKE and Path-VQA -> 0.611.
- Tables 6 and 7 (report summarization / generation, MultiMedEval): the 7 cells BLEU-1, BLEU-4*,
  ROUGE-L, METEOR, F1-RadGraph, CheXbert vector, RadCliQ* -> 0.416 / 0.235. BLEU-4* and RadCliQ* are
  the paper's re-scaled metrics, whose re-scaling the paper does not state (docs/evaluation.md,
  "Clinical metrics"), so for a run of ours these two averages are None with the reason.

A cell is read from a task entry's `metrics` (a mode such as "en" / "multimedeval" first where the
table has one) and, for the shipped reference file, from its `paper_only` block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MCQ_COLUMNS = (
    "mmlu_clinical_knowledge",
    "mmlu_college_biology",
    "mmlu_college_medicine",
    "mmlu_medical_genetics",
    "mmlu_professional_medicine",
    "mmlu_anatomy",
    "medmcqa",
    "medqa",
    "usmle",
    "pubmedqa",
)
VQA_METRICS = ("bleu1", "closed_accuracy", "open_recall", "recall", "open_accuracy", "f1")
REPORT_CELLS = (
    "bleu1",
    "bleu4_rescaled",
    "rougeL",
    "meteor",
    "f1_radgraph",
    "chexbert_similarity",
    "radcliq_rescaled",
)
RESCALED = {"bleu4_rescaled", "radcliq_rescaled"}


@dataclass(frozen=True)
class PaperTable:
    """One table's average: its cells as (task, mode or None, metric)."""

    title: str
    cells: tuple[tuple[str, str | None, str], ...]


PAPER_TABLES = {
    "table2_mcq": PaperTable("Table 2 Clinical LLM Evaluation Benchmark", tuple(("mcq", "en", c) for c in MCQ_COLUMNS)),
    "table5_vqa": PaperTable(
        "Table 5 Medical VQA Benchmark (MultiMedEval)",
        tuple((t, "multimedeval", m) for t in ("vqa-rad", "slake", "path-vqa") for m in VQA_METRICS),
    ),
    "table6_summarization": PaperTable(
        "Table 6 Report Summarization (MultiMedEval)", tuple(("mimic-iii-summarization", None, c) for c in REPORT_CELLS)
    ),
    "table7_report": PaperTable(
        "Table 7 Report Generation (MultiMedEval)", tuple(("mimic-cxr-report", None, c) for c in REPORT_CELLS)
    ),
}


def _cell(tasks: Mapping[str, Any], task: str, mode: str | None, metric: str) -> float | None:
    entry = tasks.get(task) or {}
    metrics = entry.get("metrics") or {}
    if mode is not None:
        metrics = metrics.get(mode) or {}
    value = metrics.get(metric)
    if value is None:
        value = (entry.get("paper_only") or {}).get(metric)
    return None if value is None else float(value)


def paper_average(results: Mapping[str, Any], table: str) -> tuple[float | None, str | None]:
    """(the paper's average for `table` over this results file's cells, None) or (None, why not)."""
    if table not in PAPER_TABLES:
        raise KeyError(f"unknown paper table {table!r}; known: {', '.join(PAPER_TABLES)}")
    spec = PAPER_TABLES[table]
    tasks = results.get("tasks") or {}
    values, missing = [], []
    for task, mode, metric in spec.cells:
        value = _cell(tasks, task, mode, metric)
        if value is None:
            missing.append(f"{task}/{mode}/{metric}" if mode else f"{task}/{metric}")
        else:
            values.append(value)
    if not missing:
        return sum(values) / len(values), None
    why = f"{spec.title} averages {len(spec.cells)} cells; missing: {', '.join(missing)}"
    if any(m.rsplit("/", 1)[-1] in RESCALED for m in missing):
        why += " (BLEU-4* / RadCliQ* are the paper's re-scaled metrics; their re-scaling is not stated)"
    return None, why


def paper_averages(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every table's average for one results file: {table: {"value": float | None, "why": str | None}}."""
    out = {}
    for table in PAPER_TABLES:
        value, why = paper_average(results, table)
        out[table] = {"value": value, "why": why}
    return out


def averages_rows(
    runs: Sequence[Mapping[str, Any]], printed: Mapping[str, float] | None = None
) -> tuple[tuple[str, ...], ...]:
    """Report rows, one per paper table: its title, each run's average (or "n/a"), then the paper's printed one.

    Only tables for which at least one run has a cell are listed; a run missing cells shows "n/a"
    (the reasons go to the table's notes via `averages_notes`).
    """
    rows = []
    for table, spec in PAPER_TABLES.items():
        tasks = {task for task, _, _ in spec.cells}
        if not any(tasks & set(r.get("tasks") or {}) for r in runs):
            continue
        cells = [paper_average(r, table)[0] for r in runs]
        row = [spec.title, *("n/a" if v is None else f"{v:.3f}" for v in cells)]
        if printed is not None:
            value = printed.get(table)
            row.append("-" if value is None else f"{value:.3f}")
        rows.append(tuple(row))
    return tuple(rows)


def averages_notes(runs: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> tuple[str, ...]:
    """Why each "n/a" average is not available, per run and table."""
    notes = []
    for label, run in zip(labels, runs, strict=True):
        for table, spec in PAPER_TABLES.items():
            if not {task for task, _, _ in spec.cells} & set(run.get("tasks") or {}):
                continue
            value, why = paper_average(run, table)
            if value is None:
                notes.append(f"{label}: {why}")
    return tuple(notes)
