"""`kind: mbench`: BiMed-MBench-style relative scores from an LLM judge, per type and domain, per language.

Input: LLaVA-Med QA50-style JSONL (question_id, image, text, gpt4_answer, fig_caption, domain
{chest_xray, mri, histology, gross, ct_scan}, type) - `<data>/en.jsonl` and `<data>/ar.jsonl` (or a
single .jsonl for one language), images beside it or in `<data>/images/`. The judge sees the
reference as Assistant 1 and the candidate as Assistant 2 (LLaVA-Med's order). Relative score =
mean over samples of candidate/reference x 100, as the paper states and as mbzuai-oryx/BiMediX2
BiMed-MBench/eval/summarize_gpt_review.py computes it (a sample whose reference scored 0 is left
out here instead of dividing by 1e-100).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import EvalDataError
from ...types import ImageRef, Message
from ..datasets import EvalSample, read_jsonl
from ..judge import JudgeOptions, judge_all, judge_info, require_judge
from ..metrics.judge import JudgedSample, group_relative, parse_pair_scores
from ..tables import ModelResults, Table, language_name, pct
from .base import GenerationKind, TaskRun
from .registry import register_kind

DOMAINS = {"chest_xray": "CXR", "mri": "MRI", "histology": "Histology", "gross": "Gross", "ct_scan": "CT"}
TYPES = {
    "conversation": "Conversation",
    "conv": "Conversation",
    "detailed": "Description",
    "detailed_description": "Description",
    "description": "Description",
}
COLUMNS = ("Conversation", "Description", "CXR", "MRI", "Histology", "Gross", "CT")

JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of answers to medical questions."
JUDGE_RUBRIC = (
    "We would like your feedback on the performance of two AI assistants answering the user question "
    "above about a medical image. You cannot see the image; the context gives its caption. Rate the "
    "helpfulness, relevance, accuracy and level of detail of each response. Each assistant gets an "
    "overall score from 1 to 10, higher is better. First output one line holding only the two scores, "
    "for Assistant 1 and Assistant 2, separated by a space. Then explain your evaluation, avoiding any "
    "bias from the order of the responses."
)
JUDGE_RUBRIC_AR = (
    " The question and both answers are in Arabic: an answer must be in Modern Standard Arabic (MSA); "
    "deduct points from an answer written in a dialect, in another language, or mixing languages "
    "without need (medical terms in Latin script are acceptable)."
)


@dataclass(frozen=True)
class MBenchOptions:
    """A BiMed-MBench task's own YAML keys."""

    languages: tuple[str, ...] = ("en", "ar")  # <data>/<lang>.jsonl files read (a single file: the first)
    judge: JudgeOptions = field(default_factory=JudgeOptions)


def read_mbench(path: Path, language: str, images_dir: Path) -> list[EvalSample]:
    """LLaVA-Med QA50-style records -> samples (reference = gpt4_answer)."""
    out = []
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        for key in ("question_id", "text", "gpt4_answer"):
            if key not in rec:
                raise EvalDataError(f"{where}: missing field {key!r}")
        images: tuple[ImageRef, ...] = ()
        if rec.get("image"):
            image = images_dir / rec["image"]
            if not image.is_file():
                raise EvalDataError(f"{where}: image {image} not found (put images in {images_dir})")
            images = (ImageRef(image),)
        domain = rec.get("domain") or {}
        out.append(
            EvalSample(
                id=f"{language}-{rec['question_id']}",
                text=str(rec["text"]),
                reference=str(rec["gpt4_answer"]),
                images=images,
                language=language,
                meta={
                    "caption": rec.get("fig_caption", ""),
                    "type": TYPES.get(str(rec.get("type", "")).lower(), str(rec.get("type", ""))),
                    # the first flagged domain only, as BiMed-MBench's summarize_gpt_review.py `get_domain`
                    "domains": [name for key, name in DOMAINS.items() if domain.get(key)][:1],
                },
            )
        )
    return out


def judge_messages(sample: EvalSample, candidate: str) -> list[dict[str, str]]:
    """The pairwise review prompt: reference as Assistant 1, candidate as Assistant 2."""
    rubric = JUDGE_RUBRIC + (JUDGE_RUBRIC_AR if sample.language == "ar" else "")
    content = (
        f"[Context]\n{sample.meta.get('caption', '')}\n\n[Question]\n{sample.text}\n\n"
        f"[Assistant 1]\n{sample.reference}\n[End of Assistant 1]\n\n"
        f"[Assistant 2]\n{candidate}\n[End of Assistant 2]\n\n[System]\n{rubric}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": content}]


def _language_files(task: TaskRun, root: Path) -> dict[str, Path]:
    languages = task.options.languages
    if root.is_file():
        return {str(languages[0] if languages else "en"): root}
    files = {lang: root / f"{lang}.jsonl" for lang in languages}
    present = {lang: p for lang, p in files.items() if p.is_file()}
    if not present:
        raise EvalDataError(f"task {task.name}: provide {' and/or '.join(str(p) for p in files.values())}")
    return present


@register_kind("mbench")
class MBench(GenerationKind):
    """Candidate vs reference answers scored 1-10 by a judge; relative score per type, domain, language."""

    Options = MBenchOptions
    rank = 40

    def load_scorers(self, task: TaskRun) -> None:
        require_judge(task.cfg, task.name)

    def read(self, task: TaskRun) -> list[EvalSample]:
        root = task.data_path()
        if root is None or not root.exists():
            raise EvalDataError(f"task {task.name!r} needs --data {task.name}=DIR (en.jsonl / ar.jsonl) or FILE.jsonl")
        images_dir = root.parent if root.is_file() else (root / "images" if (root / "images").is_dir() else root)
        samples = []
        for lang, file in _language_files(task, root).items():
            samples += read_mbench(file, lang, images_dir)[: task.cfg.limit or None]
        return samples

    def prompt(self, task: TaskRun, sample: EvalSample) -> list[Message]:
        return [Message("user", sample.text, sample.images)]

    def score(
        self, task: TaskRun, samples: list[EvalSample], predictions: dict[str, str], scorers: Any
    ) -> list[dict[str, Any]]:
        prompts = [judge_messages(s, predictions[s.id]) for s in samples]
        replies = judge_all(task.cfg, task.name, prompts, task.options.judge)
        rows = []
        for s, reply in zip(samples, replies, strict=True):
            pair = parse_pair_scores(reply)
            ref_score, cand_score = pair if pair else (None, None)
            rows.append(
                {
                    "id": s.id,
                    "language": s.language,
                    "type": s.meta["type"],
                    "domains": s.meta["domains"],
                    "question": s.text,
                    "reference": s.reference,
                    "prediction": predictions[s.id],
                    "judge_reply": reply,
                    "reference_score": ref_score,
                    "candidate_score": cand_score,
                }
            )
        return rows

    def aggregate(self, task: TaskRun, samples: list[EvalSample], rows: list[dict[str, Any]]) -> dict[str, Any]:
        judged: dict[str, list[JudgedSample]] = {}
        for r in rows:
            judged.setdefault(r["language"], []).append(
                JudgedSample(r["id"], r["type"], tuple(r["domains"]), r["candidate_score"], r["reference_score"])
            )
        return {
            "metrics": {lang: group_relative(js) for lang, js in judged.items()},
            "n": len(samples),
            "judge": judge_info(task.cfg),
        }

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        rows = []
        for res in results:
            for task in res.tasks:
                for lang, m in res.metrics(task).items():
                    by = {**m.get("by_type", {}), **m.get("by_domain", {})}
                    rows.append(
                        (
                            res.label,
                            language_name(lang),
                            *(pct(by.get(c), 1) for c in COLUMNS),
                            pct(m.get("overall"), 1),
                        )
                    )
        if not rows:
            return []
        return [
            Table(
                "BiMed-MBench relative score (candidate / reference x 100)",
                ("Model", "Language", *COLUMNS, "Overall"),
                tuple(rows),
                ("Relative score = mean over samples of judge(candidate) / judge(reference) x 100.",),
            )
        ]

    def radar_axes(self, results: ModelResults) -> list[tuple[str, float]]:
        axes = []
        for task in results.tasks:
            for lang, m in results.metrics(task).items():
                for key, value in {**m.get("by_type", {}), **m.get("by_domain", {})}.items():
                    if value is not None:
                        axes.append((f"{key} ({lang.upper()})", float(value)))
        return axes
