"""Run benchmark tasks in order, each through its evaluation kind, merging entries into results.json.

The output directory's layout is described in `bimedix2.eval.results`.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import EvalDataError
from .bootstrap import bootstrap_ci
from .kinds import TaskRun, get_kind
from .results import Generator, load_results, new_results, read_scored, save_results
from .spec import RunConfig, TaskSpec
from .tasks import load_task

__all__ = [
    "Generator",
    "RunConfig",
    "check_data",
    "load_results",
    "results_protocol",
    "run_eval",
    "run_task",
    "seed_everything",
    "with_intervals",
]


def seed_everything(seed: int) -> None:
    """Fix Python, NumPy and torch seeds."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is a core dependency; judge-only runs may still avoid importing it
        pass


def run_task(spec: TaskSpec, engine: Generator | None, cfg: RunConfig) -> dict[str, Any]:
    """Run one task under the run's protocol through its kind and return its results entry."""
    spec = spec if spec.protocol == cfg.protocol else spec.for_protocol(cfg.protocol)
    result = get_kind(spec.kind).run(TaskRun(spec, cfg), engine)
    entry = {
        "kind": spec.kind,
        "title": spec.title,
        "protocol": spec.protocol,
        **result,
        "predictions": f"{spec.name}/scored.jsonl",
    }
    return with_intervals(entry, cfg.out_dir / spec.name / "scored.jsonl", cfg.bootstrap, cfg.bootstrap_seed)


def with_intervals(entry: dict[str, Any], scored: Path, n_resamples: int, seed: int) -> dict[str, Any]:
    """The entry with `ci95` (the metrics' nesting, [lo, hi] leaves) and `bootstrap` (how) added, from
    its scored rows, when `n_resamples` > 0 and its kind can resample them; otherwise unchanged."""
    if n_resamples <= 0 or not scored.is_file():
        return entry
    rows = read_scored(scored)
    try:
        resampling = get_kind(str(entry["kind"])).resampling(entry, rows) if rows else None
    except EvalDataError as exc:  # the task's numbers stand; only its intervals cannot be made
        warnings.warn(f"{scored}: no bootstrap intervals: {exc}", stacklevel=2)
        return {**entry, "bootstrap": {"skipped": str(exc)}}
    if resampling is None:
        return entry
    out = {**entry, **bootstrap_ci(resampling, n_resamples, seed)}
    # intervals of the position-swap check sit in its own block: judge_swap.<lang>.ci95
    swap_ci = out["ci95"].pop("judge_swap", None)
    if swap_ci and isinstance(entry.get("judge_swap"), dict):
        out["judge_swap"] = {lang: {**sw, "ci95": swap_ci.get(lang)} for lang, sw in entry["judge_swap"].items()}
    return out


def results_protocol(results: dict[str, Any]) -> str:
    """The protocol of a results file's tasks: "paper", "toolkit", "mixed", or "" when none says."""
    found = {str(e["protocol"]) for e in results.get("tasks", {}).values() if e.get("protocol")}
    return found.pop() if len(found) == 1 else ("mixed" if found else "")


def check_data(specs: Sequence[TaskSpec], cfg: RunConfig) -> None:
    """Fail before any model loads when a task's data path is missing."""
    for spec in specs:
        path = cfg.data_path(spec.name)
        if path is None:
            raise EvalDataError(f"task {spec.name!r} needs its data: pass --data {spec.name}=PATH")
        if not path.exists():
            raise EvalDataError(f"task {spec.name!r}: data path {path} does not exist; provide the dataset there")


def run_eval(task_names: Sequence[str], engine: Generator | None, cfg: RunConfig) -> Path:
    """Run tasks in order; merge their entries into `<out>/results.json`; return its path."""
    specs = [load_task(name) for name in task_names]
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    results_path = cfg.out_dir / "results.json"
    results = load_results(results_path) if results_path.exists() else None
    model = cfg.identity()  # `NAME @ URL` when an endpoint generates
    if results is not None and results.get("model") != model:
        raise EvalDataError(
            f"{results_path} holds results of model {results.get('model')!r}, not {model!r}; use another --out"
        )
    results = results or new_results(model)
    results["label"] = cfg.label or results.get("label") or (cfg.endpoint_model if cfg.remote else None) or model
    if cfg.remote:
        from .endpoint import endpoint_info

        results["generation"] = endpoint_info(cfg)  # generated remotely: where, by which model (no key)
    for spec in specs:
        started = time.time()
        spec = spec.for_protocol(cfg.protocol)
        entry = run_task(spec, engine, cfg)
        entry["seconds"] = round(time.time() - started, 2)
        results["tasks"][spec.name] = entry
        results["config"][spec.name] = {"run": cfg.as_dict(), "task": spec.as_dict()}
        results["protocol"] = results_protocol(results)
        save_results(results, results_path)  # after every task: a later failure loses nothing
    return results_path
