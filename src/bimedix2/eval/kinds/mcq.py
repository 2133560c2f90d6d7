"""`kind: mcq`: medical multiple choice (paper Table 2) scored by lm-evaluation-harness log-likelihoods.

Data under `--data mcq=DIR`: per language, Hub-layout folders read by lm-eval's own tasks
(`<lang>/medqa/`, `<lang>/medmcqa/`, `<lang>/pubmedqa/`, `<lang>/mmlu/<subject>/`) or generic
`<lang>/<dataset>.jsonl` files; see `bimedix2.eval.mcq` for which task definition scores what under
each protocol, and for the model side (our loaded model through lm-eval's `hf` backend, or an
OpenAI-compatible completions endpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EvalDataError
from ..bootstrap import Path_, Resampling, weighted_mean
from ..mcq import DATASET_TITLES, run_lm_eval, write_tasks
from ..results import Generator, write_jsonl
from ..spec import RunConfig
from ..tables import LANG_NAMES, ModelResults, Table, cell, language_name, protocol_note
from .base import EvalKind, TaskRun
from .registry import register_kind


@dataclass(frozen=True)
class MCQOptions:
    """An MCQ task's own YAML keys."""

    datasets: tuple[str, ...] = tuple(DATASET_TITLES)  # looked for as <lang>/<folder>/ or <lang>/<dataset>.jsonl
    languages: tuple[str, ...] = ("en", "ar")
    num_fewshot: int = 0


def mcq_metrics(accuracy: dict[str, dict[str, float]]) -> dict[str, Any]:
    """{lang: {dataset: acc, "average": mean}, "bilingual": {dataset: mean over en/ar}} (fractions)."""
    table: dict[str, Any] = {}
    for lang, per in accuracy.items():
        table[lang] = {**per, "average": sum(per.values()) / len(per)}
    if "en" in accuracy and "ar" in accuracy:
        shared = sorted(set(accuracy["en"]) & set(accuracy["ar"]))
        if shared:
            bi = {d: (accuracy["en"][d] + accuracy["ar"][d]) / 2 for d in shared}
            table["bilingual"] = {**bi, "average": sum(bi.values()) / len(bi)}
    return table


def _task_numbers(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """lm-eval's own numbers for one task: metrics (acc, acc_norm, their stderr) and sample counts."""
    metrics = {k: v for k, v in raw["results"][name].items() if "," in k and not isinstance(v, str)}
    return {"metrics": metrics, "n_samples": raw.get("n-samples", {}).get(name)}


@register_kind("mcq")
class MCQ(EvalKind):
    """Accuracy per dataset and language, with English / Arabic / bilingual averages."""

    Options = MCQOptions
    rank = 10

    def needs_engine(self, cfg: RunConfig) -> bool:
        return not cfg.mcq_endpoint  # an endpoint scores without the model loaded here

    def run(self, task: TaskRun, engine: Generator | None) -> dict[str, Any]:
        data_root = task.data_path()
        if data_root is None or not data_root.is_dir():
            raise EvalDataError(
                f"task {task.name!r} needs --data {task.name}=DIR holding <lang>/<dataset>.jsonl files "
                "or Hub-layout dataset folders (<lang>/medqa/, <lang>/mmlu/<subject>/, ...)"
            )
        include_dir = task.dir / "lm_eval_tasks"
        opts, protocol = task.options, task.spec.protocol or task.cfg.protocol
        tasks = write_tasks(opts.datasets, opts.languages, data_root, include_dir, protocol)
        raw, info = run_lm_eval(list(tasks), include_dir, task.cfg, engine, task.dir, opts.num_fewshot)
        accuracy: dict[str, dict[str, float]] = {}
        rows = []
        for name, spec in tasks.items():
            accuracy.setdefault(spec.language, {})[spec.dataset] = float(raw["results"][name]["acc,none"])
            rows += [
                {
                    "task": name,
                    "dataset": spec.dataset,
                    "language": spec.language,
                    "doc_id": s.get("doc_id"),
                    "target": s.get("target"),
                    "acc": s.get("acc"),
                }
                for s in raw.get("samples", {}).get(name, [])
            ]
        write_jsonl(task.dir / "scored.jsonl", rows)
        info["tasks"] = {name: {**spec.info(), **_task_numbers(raw, name)} for name, spec in tasks.items()}
        return {"metrics": mcq_metrics(accuracy), "n": len(rows), "protocol": protocol, "lm_eval": info}

    def resampling(self, entry: Mapping[str, Any], rows: list[dict[str, Any]]) -> Resampling:
        """Accuracy per lm-eval task = mean of lm-eval's per-sample `acc`; each task resampled on its own
        (stratified), so the language averages and the bilingual row average fixed datasets, as `mcq_metrics`."""
        keys = [(str(r["language"]), str(r["dataset"])) for r in rows]
        acc = np.array([np.nan if r.get("acc") is None else float(r["acc"]) for r in rows])  # NaN: not counted
        cells = {key: np.where([k == key for k in keys], acc, np.nan) for key in dict.fromkeys(keys)}

        def statistic(w: np.ndarray) -> dict[Path_, np.ndarray]:
            accuracy: dict[str, dict[str, np.ndarray]] = {}
            for (lang, dataset), values in cells.items():
                accuracy.setdefault(lang, {})[dataset] = weighted_mean(w, values)
            table = mcq_metrics(accuracy)  # the same averaging as the point estimates, on arrays
            return {
                (lang, name): np.asarray(v, dtype=np.float64) for lang, per in table.items() for name, v in per.items()
            }

        return Resampling(
            [f"{r['task']}#{r['doc_id']}" for r in rows], statistic, strata=[str(r["task"]) for r in rows]
        )

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        rows = []
        for res in results:
            for task in res.tasks:
                metrics = res.metrics(task)
                for lang in LANG_NAMES:
                    if lang in metrics:
                        per, ci = metrics[lang], res.ci(task, lang) or {}
                        cells = (cell(per.get(d), ci.get(d)) for d in DATASET_TITLES)
                        rows.append(
                            (res.label, language_name(lang), *cells, cell(per.get("average"), ci.get("average")))
                        )
        if not rows:
            return []
        return [
            Table(
                "Medical MCQ accuracy (%) - paper Table 2 shape",
                ("Model", "Language", *DATASET_TITLES.values(), "Average"),
                tuple(rows),
                tuple(
                    n
                    for n in (
                        "Average is over the datasets present in that row; '-' = not run.",
                        protocol_note(results),
                    )
                    if n
                ),
            )
        ]

    def radar_axes(self, results: ModelResults) -> list[tuple[str, float]]:
        return [
            (f"MCQ ({language_name(lang)})", float(per["average"]) * 100.0)
            for task in results.tasks
            for lang, per in results.metrics(task).items()
            if per.get("average") is not None
        ]
