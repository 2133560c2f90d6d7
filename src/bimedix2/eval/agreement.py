"""Agreement statistics: between raters (Cohen's kappa for two, Fleiss' kappa for more) and between two
LLM judges of the same BiMed-MBench / UPHILL answers (`bimedix2 eval judge-agreement RUN_A RUN_B`).

The statistics are the field's implementations: `sklearn.metrics.cohen_kappa_score`,
`statsmodels.stats.inter_rater.fleiss_kappa` and `scipy.stats.spearmanr`. Samples one judge's reply
could not be read for are left out, and counted per run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import EvalDataError
from .compare import results_path
from .results import load_results, read_scored

# judged kinds: the per-sample field each judge produced, and which statistic compares two judges on it
JUDGED_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "mbench": (("candidate_score", "spearman"), ("relative_score", "spearman")),
    "uphill": (("stance", "kappa"),),
}


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None: undefined, e.g. both used one label)."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError("cohen_kappa needs both raters' labels for the same items")
    if not a:
        return None
    if len(set(a) | set(b)) == 1:  # perfect agreement on a single label: kappa is 0/0
        return None
    return _finite(float(cohen_kappa_score(list(a), list(b))))


def fleiss_kappa(labels: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa; `labels[i]` holds every rater's label for item i (the same number of raters per item)."""
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    if not labels:
        return None
    if len({len(row) for row in labels}) != 1:
        raise ValueError("fleiss_kappa needs the same number of raters for every item")
    categories = sorted({x for row in labels for x in row})
    if len(categories) < 2:
        return None
    table, _ = aggregate_raters([[categories.index(x) for x in row] for row in labels], n_cat=len(categories))
    return _finite(float(_fleiss(table, method="fleiss")))


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho (ties averaged), None when it is undefined (fewer than 2 samples, a constant side)."""
    from scipy.stats import spearmanr

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return _finite(float(spearmanr(a, b).statistic))


# --------------------------------------------------------------------------------- judge agreement
def _value(row: Mapping[str, Any], name: str) -> Any:
    if name == "relative_score":
        c, r = row.get("candidate_score"), row.get("reference_score")
        return None if c is None or not r else c / r * 100.0
    return row.get(name)


def _task_rows(path: Path, results: Mapping[str, Any], task: str) -> dict[str, dict[str, Any]]:
    predictions = results["tasks"][task].get("predictions")
    if not predictions:
        raise EvalDataError(f"{path}: task {task!r} has no per-sample rows (no `predictions`)")
    return {str(r["id"]): r for r in read_scored(path.parent / str(predictions))}


def task_agreement(task: str, kind: str, rows_a: Mapping[str, dict], rows_b: Mapping[str, dict]) -> dict[str, Any]:
    """One judged task: per judged field, the statistic over the shared samples both judges' replies gave."""
    shared = [i for i in rows_a if i in rows_b]
    if not shared:
        raise EvalDataError(f"task {task!r}: the runs share no sample ids; were they run on the same data?")
    for sid in shared:
        if rows_a[sid].get("prediction") != rows_b[sid].get("prediction"):
            raise EvalDataError(
                f"task {task!r}: sample {sid!r} has a different answer in the two runs; judge agreement needs "
                "two judges of the same answers (rerun one judge on the other run's predictions)"
            )
    out: dict[str, Any] = {"kind": kind, "n_shared": len(shared), "fields": {}}
    for name, stat in JUDGED_FIELDS[kind]:
        va = [_value(rows_a[i], name) for i in shared]
        vb = [_value(rows_b[i], name) for i in shared]
        both = [(x, y) for x, y in zip(va, vb, strict=True) if x is not None and y is not None]
        xs, ys = [x for x, _ in both], [y for _, y in both]
        entry: dict[str, Any] = {
            "statistic": "cohen_kappa" if stat == "kappa" else "spearman_rho",
            "value": cohen_kappa(xs, ys) if stat == "kappa" else spearman(xs, ys),
            "n": len(both),
            "n_unparsed_a": sum(x is None for x in va),
            "n_unparsed_b": sum(y is None for y in vb),
        }
        if stat == "kappa":
            entry["raw_agreement"] = (sum(x == y for x, y in both) / len(both)) if both else None
        out["fields"][name] = entry
    return out


def judge_agreement(run_a: Path, run_b: Path, tasks: Sequence[str] = ()) -> dict[str, Any]:
    """Per judged task both runs hold: Cohen's kappa (UPHILL stances) or Spearman's rho (BiMed-MBench scores)."""
    pa, pb = results_path(run_a), results_path(run_b)
    ra, rb = load_results(pa), load_results(pb)
    judged = [
        t
        for t in ra["tasks"]
        if t in rb["tasks"] and ra["tasks"][t].get("kind") in JUDGED_FIELDS and (not tasks or t in tasks)
    ]
    missing = [t for t in tasks if t not in judged]
    if missing:
        raise EvalDataError(f"task(s) {missing} are not judged tasks (mbench, uphill) present in both runs")
    if not judged:
        raise EvalDataError(
            f"{pa} and {pb} share no judged task (BiMed-MBench or UPHILL); judge agreement needs one run per judge"
        )
    out: dict[str, Any] = {"a": str(pa), "b": str(pb), "tasks": {}}
    for task in judged:
        kind_a, kind_b = ra["tasks"][task]["kind"], rb["tasks"][task]["kind"]
        if kind_a != kind_b:
            raise EvalDataError(f"task {task!r}: run A is of kind {kind_a!r}, run B of kind {kind_b!r}")
        entry = task_agreement(task, kind_a, _task_rows(pa, ra, task), _task_rows(pb, rb, task))
        entry["judge_a"] = (ra["tasks"][task].get("judge") or {}).get("model")
        entry["judge_b"] = (rb["tasks"][task].get("judge") or {}).get("model")
        out["tasks"][task] = entry
    return out


def format_judge_agreement(result: Mapping[str, Any]) -> str:
    """A plain-text table of `judge_agreement`'s result."""
    lines = [f"judge agreement: A = {result['a']}  B = {result['b']}"]
    lines.append(f"{'task':24s} {'field':16s} {'statistic':13s} {'value':>7s} {'n':>5s} {'unparsed A/B':>13s}")
    for task, entry in result["tasks"].items():
        for name, f in entry["fields"].items():
            value = "n/a" if f["value"] is None else f"{f['value']:.3f}"
            unparsed = f"{f['n_unparsed_a']}/{f['n_unparsed_b']}"
            lines.append(f"{task:24s} {name:16s} {f['statistic']:13s} {value:>7s} {f['n']:5d} {unparsed:>13s}")
    return "\n".join(lines)
