"""`kind: report` and `kind: summarization`: free-text generation scored against a reference text.

BLEU-1/4, ROUGE-L and METEOR always; F1-RadGraph, CheXbert similarity, BERTScore and RadCliQ-v1
when their local models are given (otherwise they read "n/a" with the reason, never 0).
The protocol decides the prompt and the generation (the task YAML's `prompt`/`generation` for
paper, its `toolkit:` block for toolkit); the scoring is the same under both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...types import Message
from ..bootstrap import Path_, Resampling, weighted_mean
from ..datasets import EvalSample, read_dataset
from ..metrics.clinical import CLINICAL_METRICS, UNAVAILABLE, ClinicalScorers
from ..metrics.text import TEXT_METRICS, aggregate_text, score_text
from ..tables import ModelResults, Table, cell, protocol_note
from .base import GenerationKind, TaskRun
from .registry import register_kind

PAPER_TASKS = {  # the paper's rows (Tables 6 and 7), in order; any other task of these kinds follows
    "mimic-cxr-report": "MIMIC-CXR report generation",
    "mimic-iii-summarization": "MIMIC-III summarization",
}
METRICS = (
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


@register_kind("report", "summarization")
class TextGeneration(GenerationKind):
    """Report generation (images -> findings) and summarization (findings -> impression)."""

    rank = 30

    def load_scorers(self, task: TaskRun) -> ClinicalScorers:
        return ClinicalScorers.load(task.cfg.clinical_models)

    def read(self, task: TaskRun) -> list[EvalSample]:
        samples = read_dataset(task.spec.dataset_format, task.data_path(), task.spec.dataset_options, task.name)
        return samples[: task.cfg.limit] if task.cfg.limit else samples

    def prompt(self, task: TaskRun, sample: EvalSample) -> list[Message]:
        return [Message("user", task.spec.prompt.format(question=sample.text), sample.images)]

    def score(
        self, task: TaskRun, samples: list[EvalSample], predictions: dict[str, str], scorers: ClinicalScorers
    ) -> list[dict[str, Any]]:
        rows = []
        for s in tqdm(samples, desc=f"{task.name} scoring", unit="sample"):
            sc = score_text(predictions[s.id], s.reference)
            rows.append(
                {"id": s.id, "reference": s.reference, "prediction": predictions[s.id], "n_images": len(s.images), **sc}
            )
        clinical, _ = scorers.score([r["prediction"] for r in rows], [r["reference"] for r in rows])
        for name, values in clinical.items():
            for row, value in zip(rows, values, strict=True):
                row[name] = value
        return rows

    def aggregate(self, task: TaskRun, samples: list[EvalSample], rows: list[dict[str, Any]]) -> dict[str, Any]:
        metrics: dict[str, Any] = {**aggregate_text(rows), **{name: None for name in CLINICAL_METRICS}}
        for name in CLINICAL_METRICS:
            values = [r[name] for r in rows if name in r]
            if values:
                metrics[name] = sum(values) / len(values)
        computed = {name for name in CLINICAL_METRICS if rows and name in rows[0]}
        unavailable = {k: why for k, why in UNAVAILABLE.items() if k not in computed}
        return {"metrics": metrics, "unavailable": unavailable, "n": len(samples)}

    def resampling(self, entry: Mapping[str, Any], rows: list[dict[str, Any]]) -> Resampling:
        """Every metric is a mean of per-sample scores (BLEU is sentence BLEU per sample, as MultiMedEval).

        BERTScore's idf weights were computed once over all generated reports; resamples keep those
        per-sample scores (recomputing idf and re-running the model 1,000 times is not practical)."""
        names = [n for n in (*TEXT_METRICS, *CLINICAL_METRICS) if all(n in r for r in rows)]

        def statistic(w: np.ndarray) -> dict[Path_, np.ndarray]:
            return {(name,): weighted_mean(w, [r[name] for r in rows]) for name in names}

        notes = (
            ("bertscore: idf weights from all generated reports, kept fixed in resamples",)
            if "bertscore" in names
            else ()
        )
        return Resampling([str(r["id"]) for r in rows], statistic, notes=notes)

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        rows, notes = [], []
        for res in results:
            for task in [*PAPER_TASKS, *(t for t in res.tasks if t not in PAPER_TASKS)]:
                entry = res.tasks.get(task)
                if not entry:
                    continue
                title = PAPER_TASKS.get(task) or str(entry.get("title") or task)
                metrics, unavailable = entry.get("metrics", {}), entry.get("unavailable", {})
                cells = [res.label, title]
                for key, _ in METRICS:
                    scale = 1.0 if key in RAW_METRICS else 100.0
                    value, ci = metrics.get(key), res.ci(task, key)
                    cells.append("n/a" if key in unavailable else cell(value, ci, scale, 3 if scale == 1 else 1))
                rows.append(tuple(cells))
                notes += [f"{res.label} / {title}: {key} {why}" for key, why in unavailable.items()]
        if not rows:
            return []
        protocol = protocol_note(results, [row[0] for row in rows])
        return [
            Table(
                "Report generation and summarization (%; RadCliQ-v1 raw, lower is better)",
                ("Model", "Task", *(n for _, n in METRICS)),
                tuple(rows),
                tuple(dict.fromkeys([*([protocol] if protocol else []), *notes])),
            )
        ]
