"""`bimedix2 eval compare RUN_A RUN_B`: per task and metric, B - A on the samples both runs scored,
with a paired-bootstrap 95% interval and a two-sided p-value (method: `eval.bootstrap`).

Two runs are compared only where that means something: the same task definition (kind, options,
dataset, prompt and generation as resolved, the YAML's path aside), the same protocol and judge, and at
least one shared sample id whose reference is the same in both; anything else is refused with an
error naming what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import EvalDataError
from .bootstrap import CONFIDENCE, DEFAULT_RESAMPLES, nest, paired_bootstrap
from .kinds import get_kind
from .results import load_results, read_scored

__all__ = ["compare_runs", "format_comparison", "results_path"]

# fields of a scored row that say which sample it is; a shared id must agree on them in both runs
SAMPLE_FIELDS = ("reference", "question", "query", "claim_id", "level", "veracity", "language", "target", "dataset")


def results_path(run: Path) -> Path:
    """A run's results.json: the path itself, or `<run>/results.json` for an output folder."""
    run = Path(run)
    path = run / "results.json" if run.is_dir() else run
    if not path.is_file():
        raise EvalDataError(f"no results file at {path}: pass a results.json or the --out folder of `eval run`")
    return path


def _label(results: Mapping[str, Any], path: Path) -> str:
    return str(results.get("label") or results.get("model") or path)


def _protocol(results: Mapping[str, Any], task: str) -> str:
    entry = results["tasks"][task]
    run = (results.get("config", {}).get(task) or {}).get("run") or {}
    return str(entry.get("protocol") or run.get("protocol") or "")


def _task_definition(results: Mapping[str, Any], task: str) -> dict[str, Any]:
    definition = dict((results.get("config", {}).get(task) or {}).get("task") or {})
    definition.pop("source", None)  # where the YAML lay, not what it says
    return definition


def _check_comparable(task: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    kind_a, kind_b = a["tasks"][task].get("kind"), b["tasks"][task].get("kind")
    if kind_a != kind_b:
        raise EvalDataError(f"task {task!r}: run A is of kind {kind_a!r}, run B of kind {kind_b!r}; cannot compare")
    pa, pb = _protocol(a, task), _protocol(b, task)
    if pa != pb:
        raise EvalDataError(
            f"task {task!r}: run A ran under protocol {pa or 'not recorded'!r}, run B under {pb or 'not recorded'!r}; "
            "compare runs of one protocol (--protocol paper|toolkit)"
        )
    ja, jb = (((r["tasks"][task].get("judge") or {}).get("model")) for r in (a, b))
    if ja != jb:
        raise EvalDataError(
            f"task {task!r}: run A was judged by {ja!r}, run B by {jb!r}; judge scores of different judges "
            "do not compare (use one --judge-model)"
        )
    da, db = _task_definition(a, task), _task_definition(b, task)
    if da != db:
        keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
        raise EvalDataError(
            f"task {task!r}: the runs used different task options ({', '.join(keys)}); "
            "compare runs of the same task definition"
        )


def _rows(path: Path, results: Mapping[str, Any], task: str) -> list[dict[str, Any]]:
    predictions = results["tasks"][task].get("predictions")
    if not predictions:
        raise EvalDataError(f"{path}: task {task!r} has no per-sample scores (no `predictions`); cannot pair samples")
    return read_scored(path.parent / str(predictions))


def _shared(task: str, ids_a: Sequence[str], rows_a: list[dict], ids_b: Sequence[str], rows_b: list[dict]):  # noqa: ANN202
    by_b = dict(zip(ids_b, rows_b, strict=True))
    shared = [(i, row, by_b[i]) for i, row in zip(ids_a, rows_a, strict=True) if i in by_b]
    if not shared:
        raise EvalDataError(
            f"task {task!r}: the runs share no sample ids (A scored {len(ids_a)}, B {len(ids_b)}); "
            "were they run on the same data?"
        )
    for sid, ra, rb in shared:
        for name in SAMPLE_FIELDS:
            if name in ra and name in rb and ra[name] != rb[name]:
                raise EvalDataError(
                    f"task {task!r}: sample {sid!r} has a different {name} in the two runs; "
                    "they were not run on the same data"
                )
    return [ra for _, ra, _ in shared], [rb for _, _, rb in shared]


def compare_runs(
    run_a: Path,
    run_b: Path,
    tasks: Sequence[str] = (),
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """{"a", "b", "method", "tasks": {task: {"n_shared", "n_a", "n_b", "metrics": nested {a, b, diff, ci95, p}}}}."""
    if n_resamples < 1:
        raise EvalDataError("eval compare needs at least 1 bootstrap resample (--bootstrap N)")
    path_a, path_b = results_path(run_a), results_path(run_b)
    a, b = load_results(path_a), load_results(path_b)
    shared_tasks = [t for t in a["tasks"] if t in b["tasks"]]
    if tasks:
        missing = [t for t in tasks if t not in shared_tasks]
        if missing:
            raise EvalDataError(f"task(s) {missing} are not in both runs; shared: {', '.join(shared_tasks) or 'none'}")
        shared_tasks = list(tasks)
    if not shared_tasks:
        raise EvalDataError(
            f"the runs share no task (A: {', '.join(a['tasks']) or 'none'}; B: {', '.join(b['tasks']) or 'none'})"
        )
    out: dict[str, Any] = {}
    for task in shared_tasks:
        _check_comparable(task, a, b)
        entry_a, entry_b = a["tasks"][task], b["tasks"][task]
        kind = get_kind(str(entry_a.get("kind")))
        rows_a, rows_b = _rows(path_a, a, task), _rows(path_b, b, task)
        full_a, full_b = kind.resampling(entry_a, rows_a), kind.resampling(entry_b, rows_b)
        if full_a is None or full_b is None:
            raise EvalDataError(f"task {task!r}: its kind has no per-sample scores to resample")
        sub_a, sub_b = _shared(task, full_a.ids, rows_a, full_b.ids, rows_b)
        res_a, res_b = kind.resampling(entry_a, sub_a), kind.resampling(entry_b, sub_b)
        assert res_a is not None and res_b is not None  # noqa: S101 - resampling(full rows) was not None
        pairs = paired_bootstrap(res_a, res_b, n_resamples, seed)
        out[task] = {
            "kind": entry_a.get("kind"),
            "protocol": _protocol(a, task),
            "n_shared": len(sub_a),
            "n_a": len(rows_a),
            "n_b": len(rows_b),
            "unit": res_a.unit,
            "metrics": nest(pairs),
        }
    return {
        "a": {"label": _label(a, path_a), "results": str(path_a)},
        "b": {"label": _label(b, path_b), "results": str(path_b)},
        "method": {
            "method": "paired percentile bootstrap over shared sample ids (B - A)",
            "confidence": CONFIDENCE,
            "n_resamples": n_resamples,
            "seed": seed,
            "p_value": "2 x share of resamples whose difference has the other sign (0 included), capped at 1",
            "p_resolution": 2.0 / n_resamples,
        },
        "tasks": out,
    }


def _flat(node: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    out = []
    for key, value in node.items():
        if isinstance(value, Mapping) and "diff" in value:
            out.append(((*prefix, key), dict(value)))
        elif isinstance(value, Mapping):
            out += _flat(value, (*prefix, key))
    return out


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4f}"


def format_comparison(result: Mapping[str, Any]) -> str:
    """A plain-text table: task, metric, A, B, B - A, 95% CI, p (in each metric's own units)."""
    a, b, n = result["a"]["label"], result["b"]["label"], result["method"]["n_resamples"]
    lines = [f"A = {a}", f"B = {b}", f"paired bootstrap, {n} resamples, seed {result['method']['seed']}", ""]
    lines.append(f"{'task':24s} {'metric':44s} {'A':>9s} {'B':>9s} {'B-A':>9s} {'95% CI':>21s} {'p':>7s}")
    floor, flagged = result["method"]["p_resolution"], False
    for task, info in result["tasks"].items():
        lines.append(
            f"{task}: {info['n_shared']} shared samples (A {info['n_a']}, B {info['n_b']}; resampled by {info['unit']})"
        )
        for path, m in _flat(info["metrics"]):
            ci = m.get("ci95")
            ci_text = f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else "-"
            p = m.get("p")
            p_text = "-" if p is None else (f"<{floor:.3g}" if p == 0 else f"{p:.3f}")
            flag = " *" if m.get("no_spread") else ""
            flagged = flagged or bool(flag)
            lines.append(
                f"{'':24s} {'.'.join(path):44s} {_num(m['a']):>9s} {_num(m['b']):>9s} {_num(m['diff']):>9s} "
                f"{ci_text:>21s} {p_text:>7s}{flag}"
            )
    if flagged:
        lines += [
            "",
            "* every resample gave the same difference: a group of one sample (the interval and p say nothing "
            "then), or every sample changed alike",
        ]
    return "\n".join(lines)
