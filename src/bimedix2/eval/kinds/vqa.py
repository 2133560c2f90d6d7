"""`kind: vqa`: medical VQA with MultiMedEval's metrics (paper Table 5) and our labelled improved mode.

Both metric modes are computed under either protocol; the protocol decides the generation:
paper answers MultiMedEval's question with the released inference defaults, toolkit answers it
greedily and briefly (the task YAML's `toolkit:` block).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ...types import Message
from ..bootstrap import Path_, Resampling, weighted_mean
from ..datasets import EvalSample, read_dataset
from ..metrics.vqa import VQAScore, aggregate, score_improved, score_multimedeval, yes_no_instruction
from ..tables import ModelResults, Table, cell, protocol_note
from .base import GenerationKind, TaskRun
from .registry import register_kind

PAPER_TASKS = {"vqa-rad": "VQA-RAD", "slake": "SLAKE", "path-vqa": "Path-VQA"}  # Table 5's columns, in order
METRICS = (
    ("bleu1", "BLEU-1"),
    ("closed_accuracy", "Closed Acc"),
    ("open_recall", "Open Recall"),
    ("recall", "Recall"),
    ("open_accuracy", "Open Acc"),
    ("f1", "F1"),
)
NOTES = {  # written into each results entry
    "multimedeval": "MultiMedEval rules: closed iff gold is yes/no; comparable with the paper's Table 5",
    "improved": "ours: closed iff answer_type is CLOSED; Arabic normalisation; NOT comparable with the paper",
}
MODES = {
    "multimedeval": (
        "Medical VQA (%) - MultiMedEval metrics, paper Table 5 shape",
        "Closed = gold answer is yes/no (MultiMedEval's rule); comparable with the paper.",
    ),
    "improved": (
        "Medical VQA (%) - IMPROVED mode (ours, not comparable with the paper)",
        "Closed = the dataset's answer_type is CLOSED; Arabic normalised (diacritics, tatweel, "
        "alef/yaa/taa-marbuta, Arabic-Indic digits).",
    ),
}


def vqa_prompt(prompt: str, sample: EvalSample) -> str:
    """The task prompt; MultiMedEval's yes/no instruction when the gold answer is yes/no."""
    text = prompt.format(question=sample.text)
    if yes_no_instruction(sample.reference):
        text = "Answer the following question with yes or no. " + text  # MultiMedEval vqa.py format_question
    return text


def _columns(results: Sequence[ModelResults]) -> dict[str, str]:
    """{task: column title}: the paper's three tasks, then any other VQA task found in the results."""
    columns = dict(PAPER_TASKS)
    for res in results:
        for task, entry in res.tasks.items():
            columns.setdefault(task, str(entry.get("title") or task))
    return columns


@register_kind("vqa")
class VQA(GenerationKind):
    """Closed/open accuracy, recall, F1 and BLEU-1 of short answers to image questions."""

    rank = 20

    def read(self, task: TaskRun) -> list[EvalSample]:
        samples = read_dataset(task.spec.dataset_format, task.data_path(), task.spec.dataset_options, task.name)
        return samples[: task.cfg.limit] if task.cfg.limit else samples

    def prompt(self, task: TaskRun, sample: EvalSample) -> list[Message]:
        return [Message("user", vqa_prompt(task.spec.prompt, sample), sample.images)]

    def score(
        self, task: TaskRun, samples: list[EvalSample], predictions: dict[str, str], scorers: Any
    ) -> list[dict[str, Any]]:
        rows = []
        for s in tqdm(samples, desc=f"{task.name} scoring", unit="sample"):
            rows.append(
                {
                    "id": s.id,
                    "question": s.text,
                    "reference": s.reference,
                    "prediction": predictions[s.id],
                    "answer_type": s.meta.get("answer_type"),
                    "multimedeval": asdict(score_multimedeval(predictions[s.id], s.reference)),
                    "improved": asdict(score_improved(predictions[s.id], s.reference, s.meta.get("answer_type"))),
                }
            )
        return rows

    def aggregate(self, task: TaskRun, samples: list[EvalSample], rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "metrics": {mode: aggregate([VQAScore(**r[mode]) for r in rows]) for mode in MODES},
            "notes": NOTES,
            "n": len(samples),
        }

    def resampling(self, entry: Mapping[str, Any], rows: list[dict[str, Any]]) -> Resampling:
        """Every metric is a mean of per-sample scores (closed/open ones over their questions only)."""

        def statistic(w: np.ndarray) -> dict[Path_, np.ndarray]:
            return {
                (mode, name): weighted_mean(w, values) for mode in MODES for name, values in _per_sample(rows, mode)
            }

        return Resampling([str(r["id"]) for r in rows], statistic)

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        columns = _columns(results)
        out = []
        for mode, (title, note) in MODES.items():
            rows = []
            for res in results:
                per_task = [res.metrics(task).get(mode) for task in columns]
                if any(m is not None for m in per_task):
                    cis = [res.ci(task, mode) for task in columns]
                    rows.append(
                        (
                            res.label,
                            *(
                                cell((m or {}).get(key), (ci or {}).get(key))
                                for m, ci in zip(per_task, cis, strict=True)
                                for key, _ in METRICS
                            ),
                        )
                    )
            if rows:
                header = ("Model", *(f"{col} {name}" for col in columns.values() for _, name in METRICS))
                protocol = protocol_note(results, [row[0] for row in rows])
                out.append(Table(title, header, tuple(rows), (note, *([protocol] if protocol else []))))
        return out

    def radar_axes(self, results: ModelResults) -> list[tuple[str, float]]:
        axes = []
        for task, title in _columns([results]).items():
            value = results.metrics(task).get("multimedeval", {}).get("closed_accuracy")
            if value is not None:
                axes.append((f"{title} closed acc", float(value) * 100.0))
        return axes


def _per_sample(rows: Sequence[Mapping[str, Any]], mode: str) -> list[tuple[str, list[float | None]]]:
    """(metric, per-sample value or None where the sample is outside the metric), as `aggregate` averages."""
    scores = [r[mode] for r in rows]
    closed = [bool(s["closed"]) for s in scores]
    return [
        ("bleu1", [s["bleu1"] for s in scores]),
        (
            "closed_accuracy",
            [float(bool(s["closed_correct"])) if c else None for s, c in zip(scores, closed, strict=True)],
        ),
        ("open_recall", [None if c else s["recall"] for s, c in zip(scores, closed, strict=True)]),
        ("recall", [s["recall"] for s in scores]),
        ("open_accuracy", [None if c else float(bool(s["open_correct"])) for s, c in zip(scores, closed, strict=True)]),
        ("f1", [s["f1"] for s in scores]),
    ]
