"""`kind: mbench`: BiMed-MBench relative scores from an LLM judge, per type and domain, per language.

Data: the released `data/test_sets` folder or either of its files, or `en.jsonl` / `ar.jsonl`
(see `eval.datasets.mbench`). The judge request and the scoring are the released scripts'
(see `eval.mbench`), under both protocols. What the protocol changes:

* paper: generation as `gen_ans.py` runs it (temperature 0.1, top_p 1.0, 1024 new tokens,
  sampling iff temperature > 0.001, the question with `<image>` removed and stripped, the image
  attached, no language instruction); the judge reply's first line must hold the two scores
  (else the sample is counted unparsed); a reference scored 0 stays in (s2 / (s1 + 1e-100));
  groups by the `type` label as written.
* toolkit: the task YAML's `toolkit:` generation (greedy, language steering); a reply whose first
  line fails is read by the tolerant parser (counted in `n_tolerant`); a 0 reference is left out
  (counted in `n_zero_reference`); Arabic type labels count as their English types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import EvalDataError
from ...types import Message
from ..datasets import EvalSample, read_mbench
from ..judge import JudgeOptions, judge_all, judge_info, require_judge
from ..mbench import (
    JUDGE_MODEL,
    Scored,
    first_domain,
    judge_messages,
    parse_first_line,
    summarize,
    toolkit_summary,
    toolkit_type,
)
from ..metrics.judge import parse_pair_scores
from ..tables import ModelResults, Table, language_name, pct, protocol_note
from .base import GenerationKind, TaskRun
from .registry import register_kind

COLUMNS = ("Conversation", "Description", "CXR", "MRI", "Histology", "Gross", "CT")


@dataclass(frozen=True)
class MBenchOptions:
    """A BiMed-MBench task's own YAML keys."""

    languages: tuple[str, ...] = ("en", "ar")  # languages evaluated (each file's language is read from its data)
    judge: JudgeOptions = field(default_factory=lambda: JudgeOptions(model=JUDGE_MODEL))


def _scores(reply: str, protocol: str) -> tuple[tuple[float, float] | None, str | None]:
    """(s1, s2) and how they were read: "first-line", "tolerant" (toolkit only) or None."""
    pair = parse_first_line(reply)
    if pair is not None:
        return pair, "first-line"
    if protocol == "toolkit":
        pair = parse_pair_scores(reply)
        if pair is not None:
            return pair, "tolerant"
    return None, None


@register_kind("mbench")
class MBench(GenerationKind):
    """Candidate vs reference answers scored 1-10 by a judge; relative score per type, domain, language."""

    Options = MBenchOptions
    rank = 40

    def load_scorers(self, task: TaskRun) -> None:
        require_judge(task.cfg, task.name, task.options.judge)

    def read(self, task: TaskRun) -> list[EvalSample]:
        root = task.data_path()
        if root is None or not root.exists():
            raise EvalDataError(
                f"task {task.name!r} needs --data {task.name}=PATH: the released BiMed-MBench data/test_sets "
                "folder, one of its .jsonl files, or a folder with en.jsonl / ar.jsonl"
            )
        samples = read_mbench(root, task.options.languages)
        if not task.cfg.limit:
            return samples
        kept: dict[str, int] = {}
        out = []
        for s in samples:  # --limit N: the first N of each language
            kept[s.language] = kept.get(s.language, 0) + 1
            if kept[s.language] <= task.cfg.limit:
                out.append(s)
        return out

    def prompt(self, task: TaskRun, sample: EvalSample) -> list[Message]:
        return [Message("user", task.spec.prompt.format(question=sample.text), sample.images)]

    def score(
        self, task: TaskRun, samples: list[EvalSample], predictions: dict[str, str], scorers: Any
    ) -> list[dict[str, Any]]:
        prompts = [judge_messages(s.meta["record"], predictions[s.id], s.language) for s in samples]
        replies = judge_all(task.cfg, task.name, prompts, task.options.judge)
        rows = []
        for s, reply in zip(samples, replies, strict=True):
            rec = s.meta["record"]
            pair, parsed = _scores(reply, task.spec.protocol)
            rows.append(
                {
                    "id": s.id,
                    "question_id": rec["question_id"],
                    "language": s.language,
                    "type": str(rec["type"]),
                    "domain": first_domain(rec["domain"]),
                    "question": s.text,
                    "reference": s.reference,
                    "prediction": predictions[s.id],
                    "judge_reply": reply,
                    "reference_score": pair[0] if pair else None,
                    "candidate_score": pair[1] if pair else None,
                    "score_parsing": parsed,
                }
            )
        return rows

    def aggregate(self, task: TaskRun, samples: list[EvalSample], rows: list[dict[str, Any]]) -> dict[str, Any]:
        toolkit = task.spec.protocol == "toolkit"
        by_language: dict[str, list[Scored]] = {}
        tolerant: dict[str, int] = {}
        for r in rows:
            label = toolkit_type(r["type"]) if toolkit else r["type"]
            scored = Scored(r["id"], label, r["domain"], r["reference_score"], r["candidate_score"])
            by_language.setdefault(r["language"], []).append(scored)
            tolerant[r["language"]] = tolerant.get(r["language"], 0) + (r["score_parsing"] == "tolerant")
        metrics = {
            lang: toolkit_summary(group, tolerant[lang]) if toolkit else summarize(group)
            for lang, group in by_language.items()
        }
        return {
            "metrics": metrics,
            "n": len(samples),
            "judge": judge_info(task.cfg, task.options.judge),
            "score_parsing": "first line, then tolerant" if toolkit else "first line (summarize_gpt_review.py)",
        }

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        rows, notes = [], []
        for res in results:
            for task in res.tasks:
                for lang, m in res.metrics(task).items():
                    by = {**m.get("by_type", {}), **m.get("by_domain", {})}
                    cells = (pct(by.get(c), 1) for c in COLUMNS)
                    rows.append((res.label, language_name(lang), *cells, pct(m.get("overall"), 1)))
                    notes += _row_notes(res.label, lang, m)
        if not rows:
            return []
        note = protocol_note(results, [row[0] for row in rows])
        return [
            Table(
                "BiMed-MBench relative score (candidate / reference x 100)",
                ("Model", "Language", *COLUMNS, "Overall"),
                tuple(rows),
                (
                    "Relative score = mean over samples of judge(candidate) / judge(reference) x 100.",
                    *([note] if note else []),
                    *notes,
                ),
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


def _row_notes(label: str, lang: str, m: dict[str, Any]) -> list[str]:
    """Footnotes for one row: unparsed / tolerant / zero-reference counts, groups outside the table."""
    where = f"{label} / {language_name(lang)}"
    notes = []
    if m.get("n_unparsed"):
        notes.append(f"{where}: {m['n_unparsed']} of {m.get('n')} judge replies unparsed (not scored).")
    if m.get("n_tolerant"):
        notes.append(f"{where}: {m['n_tolerant']} scores read by the tolerant parser (toolkit protocol).")
    if m.get("n_zero_reference"):
        notes.append(f"{where}: {m['n_zero_reference']} samples with a reference scored 0 left out (toolkit).")
    other = {k: v.get("n") for k, v in (m.get("other_groups") or {}).items()}
    if other:
        listed = ", ".join(f"{k!s} ({n})" for k, n in other.items())
        notes.append(f"{where}: groups the released table leaves out (counted in Overall and domains): {listed}.")
    return notes
