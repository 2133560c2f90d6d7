"""`kind: mcq`: medical multiple choice (paper Table 2) scored by lm-evaluation-harness log-likelihoods.

Data under `--data mcq=DIR`: per language, Hub-layout folders read by lm-eval's own tasks
(`<lang>/medqa/`, `<lang>/medmcqa/`, `<lang>/pubmedqa/`, `<lang>/mmlu/<subject>/`) or generic
`<lang>/<dataset>.jsonl` files; see `bimedix2.eval.mcq` for which task definition scores what under
each protocol, and for the model side (our loaded model through lm-eval's `hf` backend, or an
OpenAI-compatible completions endpoint).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EvalDataError
from ...types import GenParams, Message
from ..bootstrap import Path_, Resampling, weighted_mean
from ..datasets.mcq import LETTERS
from ..mcq import DATASET_TITLES, run_lm_eval, write_tasks
from ..mcq_generative import INSTRUCTIONS, PROMPT_KEY, collect_questions, generative_prompt, parse_letter
from ..results import Generator, write_jsonl
from ..spec import RunConfig
from ..tables import LANG_NAMES, ModelResults, Table, cell, language_name, protocol_note
from .base import EvalKind, TaskRun, generate_predictions
from .registry import register_kind

GENERATIVE_NOTE = (
    "generative MCQ: the answer letter read from a generated reply (strict parser); accuracy over the parsed "
    "replies, unparsed ones counted beside it; a different protocol from the paper's log-likelihood scoring"
)


@dataclass(frozen=True)
class MCQOptions:
    """An MCQ task's own YAML keys."""

    datasets: tuple[str, ...] = tuple(DATASET_TITLES)  # looked for as <lang>/<folder>/ or <lang>/<dataset>.jsonl
    languages: tuple[str, ...] = ("en", "ar")
    num_fewshot: int = 0
    # --mcq-mode generative: greedy, this many new tokens for the reply holding the letter
    generative_max_new_tokens: int = 32


def mcq_metrics(accuracy: dict[str, dict[str, Any]], skip_missing: bool = False) -> dict[str, Any]:
    """{lang: {dataset: acc, "average": mean}, "bilingual": {dataset: mean over en/ar}} (fractions).

    `skip_missing` (generative mode): a dataset whose accuracy is None (NaN in resamples: no reply
    parsed) is left out of the averages; an average over none is None (NaN)."""
    mean = _mean_present if skip_missing else _mean
    table: dict[str, Any] = {}
    for lang, per in accuracy.items():
        table[lang] = {**per, "average": mean(list(per.values()))}
    if "en" in accuracy and "ar" in accuracy:
        shared = sorted(set(accuracy["en"]) & set(accuracy["ar"]))
        if shared:
            bi = {d: mean([accuracy["en"][d], accuracy["ar"][d]]) for d in shared}
            table["bilingual"] = {**bi, "average": mean(list(bi.values()))}
    return table


def _mean(values: list[Any]) -> Any:
    return sum(values) / len(values)


def _mean_present(values: list[Any]) -> Any:
    if any(isinstance(v, np.ndarray) for v in values):
        stacked = np.stack([np.asarray(v, dtype=np.float64) for v in values])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, as intended
            return np.nanmean(stacked, axis=0)
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


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
        if cfg.resolved_mcq_mode() == "generative":
            return not cfg.remote  # the --endpoint answers
        return not cfg.mcq_endpoint  # an endpoint scores without the model loaded here

    def run(self, task: TaskRun, engine: Generator | None) -> dict[str, Any]:
        data_root = task.data_path()
        if data_root is None or not data_root.is_dir():
            raise EvalDataError(
                f"task {task.name!r} needs --data {task.name}=DIR holding <lang>/<dataset>.jsonl files "
                "or Hub-layout dataset folders (<lang>/medqa/, <lang>/mmlu/<subject>/, ...)"
            )
        if task.cfg.resolved_mcq_mode() == "generative":
            return self._run_generative(task, engine, data_root)
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
        return {
            "metrics": mcq_metrics(accuracy),
            "n": len(rows),
            "protocol": protocol,
            "mcq_mode": "loglikelihood",
            "lm_eval": info,
        }

    def _run_generative(self, task: TaskRun, engine: Generator | None, data_root: Any) -> dict[str, Any]:
        """--mcq-mode generative: each question asked with its options; the letter parsed from the reply."""
        opts, cfg = task.options, task.cfg
        questions = collect_questions(opts.datasets, opts.languages, data_root, cfg.limit)
        params = GenParams(
            max_new_tokens=cfg.max_new_tokens or opts.generative_max_new_tokens,
            temperature=0.0,
            do_sample=False,
            seed=cfg.seed,
        )
        items = [(q.id, [Message("user", generative_prompt(q.record, q.language))]) for q in questions]
        replies = generate_predictions(task, engine, items, params, PROMPT_KEY)
        rows = []
        for q in questions:
            rec = q.record
            parsed = parse_letter(replies[q.id], len(rec.options), rec.options)
            rows.append(
                {
                    "task": f"bimedix2_{q.dataset}_{q.language}",
                    "dataset": q.dataset,
                    "language": q.language,
                    "doc_id": rec.id,
                    "target": LETTERS[rec.gold],
                    "prediction": replies[q.id],
                    "parsed": parsed,
                    "acc": None if parsed is None else float(parsed == LETTERS[rec.gold]),
                }
            )
        write_jsonl(task.dir / "scored.jsonl", rows)
        accuracy: dict[str, dict[str, float | None]] = {}
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for key in dict.fromkeys((r["language"], r["dataset"]) for r in rows):
            group = [r for r in rows if (r["language"], r["dataset"]) == key]
            scored = [r["acc"] for r in group if r["acc"] is not None]
            accuracy.setdefault(key[0], {})[key[1]] = sum(scored) / len(scored) if scored else None
            counts.setdefault(key[0], {})[key[1]] = {
                "n": len(group),
                "parsed": len(scored),
                "unparsed": len(group) - len(scored),
            }
        entry: dict[str, Any] = {
            "metrics": mcq_metrics(accuracy, skip_missing=True),
            "n": len(rows),
            "protocol": task.spec.protocol or cfg.protocol,
            "mcq_mode": "generative",
            "mcq_generative": {
                "note": GENERATIVE_NOTE,
                "replies": counts,
                "unparsed": sum(c["unparsed"] for per in counts.values() for c in per.values()),
                "instruction": dict(INSTRUCTIONS),
                "request": {"max_new_tokens": params.max_new_tokens, "temperature": 0.0, "seed": params.seed},
            },
        }
        if cfg.remote:
            from ..endpoint import endpoint_info

            entry["generation"] = endpoint_info(cfg, params)
        return entry

    def resampling(self, entry: Mapping[str, Any], rows: list[dict[str, Any]]) -> Resampling:
        """Accuracy per lm-eval task = mean of lm-eval's per-sample `acc`; each task resampled on its own
        (stratified), so the language averages and the bilingual row average fixed datasets, as `mcq_metrics`."""
        generative = entry.get("mcq_mode") == "generative"
        keys = [(str(r["language"]), str(r["dataset"])) for r in rows]
        acc = np.array([np.nan if r.get("acc") is None else float(r["acc"]) for r in rows])  # NaN: not counted
        cells = {key: np.where([k == key for k in keys], acc, np.nan) for key in dict.fromkeys(keys)}

        def statistic(w: np.ndarray) -> dict[Path_, np.ndarray]:
            accuracy: dict[str, dict[str, np.ndarray]] = {}
            for (lang, dataset), values in cells.items():
                accuracy.setdefault(lang, {})[dataset] = weighted_mean(w, values)
            table = mcq_metrics(accuracy, skip_missing=generative)  # the same averaging as the point estimates
            return {
                (lang, name): np.asarray(v, dtype=np.float64) for lang, per in table.items() for name, v in per.items()
            }

        return Resampling(
            [f"{r['task']}#{r['doc_id']}" for r in rows], statistic, strata=[str(r["task"]) for r in rows]
        )

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        return [*self._table(results, generative=False), *self._table(results, generative=True)]

    def _table(self, results: Sequence[ModelResults], generative: bool) -> list[Table]:
        """The log-likelihood table (the paper's protocol), or the generative one: never mixed."""
        rows, counts = [], []
        for res in results:
            for task, entry in res.tasks.items():
                if (entry.get("mcq_mode") == "generative") != generative:
                    continue
                metrics = res.metrics(task)
                replies = (entry.get("mcq_generative") or {}).get("replies") or {}
                for lang in LANG_NAMES:
                    if lang in metrics:
                        per, ci = metrics[lang], res.ci(task, lang) or {}
                        run = {d for d, c in (replies.get(lang) or {}).items() if c.get("n")}
                        cells = (
                            "n/a" if per.get(d) is None and d in run else cell(per.get(d), ci.get(d))
                            for d in DATASET_TITLES
                        )
                        rows.append(
                            (res.label, language_name(lang), *cells, cell(per.get("average"), ci.get("average")))
                        )
                for lang, per_dataset in replies.items():
                    unread = {d: c["unparsed"] for d, c in per_dataset.items() if c.get("unparsed")}
                    if unread:
                        counts.append(
                            f"{res.label} / {language_name(lang)}: unparsed replies (not scored) "
                            + ", ".join(
                                f"{DATASET_TITLES.get(d, d)} {n} of {per_dataset[d]['n']}" for d, n in unread.items()
                            )
                        )
        if not rows:
            return []
        title = (
            "Medical MCQ accuracy (%) - GENERATIVE mode (answer letter parsed from the reply; "
            "not the paper's log-likelihood protocol)"
            if generative
            else "Medical MCQ accuracy (%) - paper Table 2 shape"
        )
        notes = [
            "Average is over the datasets present in that row; '-' = not run.",
            *(
                [
                    "mcq_mode: generative - each question asked with its lettered options and an instruction to "
                    "answer with the letter; accuracy over the replies whose letter could be read; n/a = none could.",
                    *counts,
                ]
                if generative
                else []
            ),
            protocol_note(results),
        ]
        return [
            Table(
                title,
                ("Model", "Language", *DATASET_TITLES.values(), "Average"),
                tuple(rows),
                tuple(n for n in notes if n),
            )
        ]

    def radar_axes(self, results: ModelResults) -> list[tuple[str, float]]:
        return [
            (f"MCQ{generative_label(results.tasks[task])} ({language_name(lang)})", float(per["average"]) * 100.0)
            for task in results.tasks
            for lang, per in results.metrics(task).items()
            if per.get("average") is not None
        ]


def generative_label(entry: Mapping[str, Any]) -> str:
    """ " generative" for a generative-mode entry (its radar axis is another protocol's), else ""."""
    return " generative" if entry.get("mcq_mode") == "generative" else ""
