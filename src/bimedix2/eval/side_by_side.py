"""The side-by-side comparison table: one column per run, one row per task x metric, as the papers lay out
their comparison tables, plus the paper's reported numbers as a reference column.

Every measured cell is "value [lo, hi]" when its run carries bootstrap intervals (`ci95`, the
metrics' nesting); the reference column holds published numbers, marked as reported, not measured
here, so they never carry an interval. Metrics are read generically from each entry's `metrics`
(counts such as `n`, `n_closed` left out), so a new kind's numbers appear without code here;
BiMed-MBench relative scores are already in percent and RadCliQ is a raw score (printed as is),
every other metric is a fraction printed as a percentage. A judged task run with `--judge-swap`
adds its position-swap rows (position bias, swapped and swap-averaged scores) under "judge swap".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .tables import Table, cell, language_name, signed
from .tasks import builtin_task_kinds

__all__ = ["REFERENCE_HEADER", "side_by_side_table"]

REFERENCE_HEADER = "paper (reported)"
COUNT_KEY = re.compile(r"n|n_.+|.+_count|unparsed")
PERCENT_KINDS = frozenset({"mbench"})  # metrics already in percent (relative scores)
RAW_METRICS = frozenset({"radcliq"})  # not fractions: printed as is, 3 decimals
SIGNED_METRICS = frozenset({"position_bias"})
# BiMed-MBench's released summary (raw judge scores per group) repeats by_type / by_domain: its own tables show it
SKIPPED = frozenset({"ci95", "groups", "other_groups"})
Path_ = tuple[str, ...]


def _leaves(node: Any, prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """(path, value) of every metric leaf (a number or None) in file order; counts and intervals skipped."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in SKIPPED or (not isinstance(value, Mapping) and COUNT_KEY.fullmatch(str(key))):
                continue
            yield from _leaves(value, (*prefix, str(key)))
    elif node is None or (isinstance(node, (int, float)) and not isinstance(node, bool)):
        yield prefix, node


def _at(node: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _entry_paths(entry: Mapping[str, Any]) -> Iterator[tuple[Path_, Any, Any]]:
    """(row path, value, ci) of an entry: its metrics, then its judge-swap block's summary numbers (those
    with an interval, and the position bias always)."""
    for path, value in _leaves(entry.get("metrics", {})):
        yield path, value, _at(entry.get("ci95"), path)
    for lang, block in (entry.get("judge_swap") or {}).items():
        for path, value in _leaves(block):
            ci = _at(block.get("ci95"), path)
            if ci is not None or path[-1] in SIGNED_METRICS:
                yield ("judge swap", lang, *path), value, ci


def _label(path: Path_) -> str:
    return " / ".join(language_name(p) if p in ("en", "ar", "bilingual") else p for p in path)


def _format(kind: str, path: Path_, value: Any, ci: Any, unavailable: Mapping[str, Any]) -> str:
    if value is None and path and path[-1] in unavailable:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    scale = 1.0 if kind in PERCENT_KINDS else 100.0
    if path and path[-1] in SIGNED_METRICS:
        return signed(value, ci, scale, 2 if scale == 1.0 else 1)
    if path and path[-1] in RAW_METRICS:
        return cell(value, ci, 1.0, 3)
    return cell(value, ci, scale, 1)


def _task_title(task: str, entries: Sequence[Mapping[str, Any]]) -> str:
    title = next((str(e["title"]) for e in entries if e.get("title")), task)
    return title if title == task else f"{title} ({task})"


def _protocol_cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "-"
    parts = [str(entry.get("protocol") or "not recorded")]
    if entry.get("mcq_mode"):
        parts.append(f"MCQ {entry['mcq_mode']}")
    if (entry.get("generation") or {}).get("remote"):
        parts.append("endpoint")
    return ", ".join(parts)


def side_by_side_table(runs: Sequence[Mapping[str, Any]], reference: Mapping[str, Any] | None = None) -> Table | None:
    """The comparison table of `runs` (results documents, unique labels), with `reference`'s published
    numbers as a last column for the tasks it has; None when no run has a task."""
    labels = [str(r.get("label") or r.get("model")) for r in runs]
    tasks = list(dict.fromkeys(t for r in runs for t in r.get("tasks", {})))
    if not tasks:
        return None
    ref_tasks = (reference or {}).get("tasks", {})
    with_ref = any(t in ref_tasks for t in tasks)
    rows: list[tuple[str, ...]] = []
    missing_ci = set()
    for task in tasks:
        entries = [r["tasks"].get(task) for r in runs]
        present = [e for e in entries if e is not None]
        ref = ref_tasks.get(task)
        kind = str(next((e.get("kind") for e in present if e.get("kind")), "") or builtin_task_kinds().get(task, ""))
        title = _task_title(task, [*present, *([ref] if ref else [])])
        rows.append((title, "(protocol)", *(_protocol_cell(e) for e in entries), *(["published"] if with_ref else [])))
        # the paper's rows in its order, then what only the runs measured, then the judge-swap rows
        paths: dict[Path_, None] = dict.fromkeys(p for p, _ in _leaves((ref or {}).get("metrics", {})))
        measured = [p for e in present for p, _, _ in _entry_paths(e)]
        paths.update((p, None) for p in measured if p[0] != "judge swap")
        paths.update((p, None) for p in measured if p[0] == "judge swap")
        found_in = [{p: (v, c) for p, v, c in _entry_paths(e)} if e is not None else {} for e in entries]
        for path in paths:
            cells = []
            for label, e, found in zip(labels, entries, found_in, strict=True):
                value, ci = found.get(path, (None, None))
                text = (
                    "-"
                    if e is None or path not in found
                    else _format(kind, path, value, ci, e.get("unavailable") or {})
                )
                if value is not None and not (isinstance(value, float) and math.isnan(value)) and ci is None:
                    missing_ci.add(label)
                cells.append(text)
            if with_ref:
                value = _at(ref.get("metrics", {}), path) if ref is not None else None
                unavailable = (ref or {}).get("unavailable") or {}
                cells.append("-" if ref is None else _format(kind, path, value, None, unavailable))
            rows.append(("", _label(path), *cells))  # the task named once, on its (protocol) row
    notes = [
        "Every measured cell: value [95% bootstrap interval] over the run's samples (percent unless noted; "
        "BiMed-MBench: relative score in percent; RadCliQ: raw score; position bias: points, + = the second "
        "position favoured). '-': not run or not defined; 'n/a': needs a model that was not given.",
    ]
    if with_ref:
        notes.append(
            f"'{REFERENCE_HEADER}': {reference.get('label')} as published ({reference.get('source', 'the paper')}): "
            "reported, not measured here, so without intervals; its judges and protocols are the paper's."
        )
    if missing_ci:
        notes.append(
            f"No intervals recorded (run without --bootstrap or an older file): {', '.join(sorted(missing_ci))}."
        )
    header = ("Task", "Metric", *labels, *([f"{REFERENCE_HEADER}: {reference.get('label')}"] if with_ref else []))
    return Table("Side by side: one column per run", header, tuple(rows), tuple(notes))
