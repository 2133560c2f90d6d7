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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import EvalDataError
from ...types import Message
from ..bootstrap import Path_, Resampling, weighted_mean
from ..datasets import EvalSample, read_mbench
from ..judge import JudgeOptions, judge_all, judge_info, require_judge
from ..mbench import (
    DISPLAY,
    DOMAIN_ORDER,
    JUDGE_MODEL,
    TABLE_GROUPS,
    TYPE_NAMES,
    Scored,
    first_domain,
    judge_messages,
    parse_first_line,
    ratio,
    summarize,
    toolkit_summary,
    toolkit_type,
)
from ..metrics.judge import parse_pair_scores
from ..tables import ModelResults, Table, cell, language_name, protocol_note, signed
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
        swap = [swapped_messages(s.meta["record"], predictions[s.id], s.language) for s in samples]
        replies = judge_all(task.cfg, task.name, prompts + (swap if task.cfg.judge_swap else []), task.options.judge)
        swapped, replies = replies[len(samples) :], replies[: len(samples)]
        rows = []
        for i, (s, reply) in enumerate(zip(samples, replies, strict=True)):
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
            if swapped:  # --judge-swap: the candidate was Assistant 1, the reference Assistant 2
                pair, parsed = _scores(swapped[i], task.spec.protocol)
                rows[-1].update(
                    swap_judge_reply=swapped[i],
                    swap_reference_score=pair[1] if pair else None,  # swapped back: reference = second score
                    swap_candidate_score=pair[0] if pair else None,
                    swap_score_parsing=parsed,
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
        unparsed = sum(r["reference_score"] is None or r["candidate_score"] is None for r in rows)
        swap = {}
        if any("swap_judge_reply" in r for r in rows):
            swap = {"judge_swap": {lang: swap_summary(group, toolkit) for lang, group in _by_language(rows).items()}}
        return {
            "metrics": metrics,
            **swap,
            "n": len(samples),
            "judge_replies": {"n": len(rows), "unparsed": unparsed},
            "judge": judge_info(task.cfg, task.options.judge),
            "score_parsing": "first line, then tolerant" if toolkit else "first line (summarize_gpt_review.py)",
        }

    def resampling(self, entry: Mapping[str, Any], rows: list[dict[str, Any]]) -> Resampling:
        """Each group's numbers are means over its scored samples (`summarize`); languages resampled apart."""
        toolkit = entry.get("protocol") == "toolkit"
        kept = [_kept(r, toolkit) for r in rows]  # (s1, s2) of a sample the summary counts, else None
        members: dict[tuple[str, str], list[bool]] = {}  # (language, group) -> which rows are in it
        for i, (r, pair) in enumerate(zip(rows, kept, strict=True)):
            if pair is None:
                continue
            label = toolkit_type(r["type"]) if toolkit else r["type"]
            for group in (label, "overall", str(r["domain"])):
                members.setdefault((r["language"], group), [False] * len(rows))[i] = True
        s1 = [p[0] if p else None for p in kept]
        s2 = [p[1] if p else None for p in kept]
        rel = [ratio(*p) * 100 if p else None for p in kept]
        swap = _swap_columns(rows, toolkit) if any("swap_judge_reply" in r for r in rows) else {}

        def statistic(w: np.ndarray) -> dict[Path_, np.ndarray]:
            out: dict[Path_, np.ndarray] = {path: weighted_mean(w, col) for path, col in swap.items()}
            for (lang, group), inside in members.items():
                where = "groups" if group in TABLE_GROUPS else "other_groups"
                for name, values in (("reference_score", s1), ("candidate_score", s2), ("relative_score", rel)):
                    masked = [v if m else None for v, m in zip(values, inside, strict=True)]
                    out[(lang, where, group, name)] = weighted_mean(w, masked)
                relative = out[(lang, where, group, "relative_score")]
                if group == "overall":
                    out[(lang, "overall")] = relative
                elif group in TYPE_NAMES:
                    out[(lang, "by_type", DISPLAY[group])] = relative
                elif group in DOMAIN_ORDER:
                    out[(lang, "by_domain", DISPLAY[group])] = relative
            return out

        return Resampling([str(r["id"]) for r in rows], statistic, strata=[str(r["language"]) for r in rows])

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        rows, notes = [], []
        for res in results:
            for task in res.tasks:
                for lang, m in res.metrics(task).items():
                    by = {**m.get("by_type", {}), **m.get("by_domain", {})}
                    ci = res.ci(task, lang) or {}
                    ci_by = {**(ci.get("by_type") or {}), **(ci.get("by_domain") or {})}
                    if m.get("n") and not m.get("n_scored", m.get("n")):  # nothing the judge said could be read
                        cells = ["n/a"] * (len(COLUMNS) + 1)
                    else:
                        cells = [cell(by.get(c), ci_by.get(c), 1) for c in COLUMNS]
                        cells.append(cell(m.get("overall"), ci.get("overall"), 1))
                    rows.append((res.label, language_name(lang), *cells))
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
            ),
            *self._swap_table(results),
        ]

    def _swap_table(self, results: Sequence[ModelResults]) -> list[Table]:
        rows = []
        for res in results:
            for entry in res.tasks.values():
                for lang, sw in (entry.get("judge_swap") or {}).items():
                    original = (entry.get("metrics", {}).get(lang) or {}).get("overall")
                    original_ci = ((entry.get("ci95") or {}).get(lang) or {}).get("overall")
                    ci = sw.get("ci95") or {}
                    averaged_ci = (ci.get("swap_averaged") or {}).get("overall")
                    rows.append(
                        (
                            res.label,
                            language_name(lang),
                            cell(original, original_ci, 1),
                            cell(sw.get("swapped_overall"), ci.get("swapped_overall"), 1),
                            cell((sw.get("swap_averaged") or {}).get("overall"), averaged_ci, 1),
                            signed(sw.get("position_bias"), ci.get("position_bias"), 1.0, 2),
                            f"{sw.get('n_pairs')} of {sw.get('n')}",
                        )
                    )
        if not rows:
            return []
        return [
            Table(
                "BiMed-MBench judge position-swap check (--judge-swap)",
                ("Model", "Language", "Overall", "Overall, answers swapped", "Swap-averaged", "Position bias", "Pairs"),
                tuple(rows),
                (
                    "Swapped: the candidate shown as Assistant 1, the reference as Assistant 2, scores swapped back.",
                    "Position bias = mean judge points an answer gains when shown second (> 0: the second is "
                    "favoured); swap-averaged = relative score of each sample's two scores averaged over the orders.",
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


def swapped_messages(record: Mapping[str, Any], candidate: str, language: str) -> list[dict[str, str]]:
    """--judge-swap: the released request with the two answers' positions exchanged (the candidate as
    Assistant 1, the reference as Assistant 2); everything else as released."""
    return judge_messages({**record, "gpt4_answer": candidate}, str(record["gpt4_answer"]), language)


def _by_language(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(str(r["language"]), []).append(r)
    return out


def swap_summary(rows: Sequence[Mapping[str, Any]], toolkit: bool) -> dict[str, Any]:
    """One language's position-swap check over the samples whose reply was read in both orders.

    `position_bias`: mean over those samples and both answers of (its score shown as Assistant 2 minus
    its score shown as Assistant 1), in judge points; > 0: the judge favours the second position.
    `swap_averaged`: the released summary on each sample's two scores averaged over the orders;
    `swapped_overall`: the overall relative score with the answers exchanged (scores swapped back).
    """
    both = [r for r in rows if _kept(r, toolkit) and _kept(_swapped_row(r), toolkit)]
    cand = [r["candidate_score"] - r["swap_candidate_score"] for r in both]  # candidate: 2nd minus 1st
    ref = [r["swap_reference_score"] - r["reference_score"] for r in both]  # reference: 2nd minus 1st

    def scored(r: Mapping[str, Any], s1: float | None, s2: float | None) -> Scored:
        label = toolkit_type(r["type"]) if toolkit else r["type"]
        return Scored(str(r["id"]), label, r["domain"], s1, s2)

    averaged = [
        scored(
            r,
            (r["reference_score"] + r["swap_reference_score"]) / 2,
            (r["candidate_score"] + r["swap_candidate_score"]) / 2,
        )
        for r in both
    ]
    swapped = [scored(r, r["swap_reference_score"], r["swap_candidate_score"]) for r in rows]

    def summary(group: list[Scored]) -> dict[str, Any]:
        return toolkit_summary(group, 0) if toolkit else summarize(group)

    avg = summary(averaged)
    return {
        "position_bias": (sum(cand) + sum(ref)) / (2 * len(both)) if both else None,
        "candidate_second_minus_first": sum(cand) / len(both) if both else None,
        "reference_second_minus_first": sum(ref) / len(both) if both else None,
        "swap_averaged": {k: avg[k] for k in ("overall", "by_type", "by_domain", "groups")},
        "swapped_overall": summary(swapped)["overall"],
        "n_pairs": len(both),
        "n_unparsed_swapped": sum(r["swap_reference_score"] is None for r in rows),
        "n": len(rows),
    }


def _swap_columns(rows: Sequence[Mapping[str, Any]], toolkit: bool) -> dict[Path_, np.ndarray]:
    """Per-row values `swap_summary`'s numbers average, under ("judge_swap", language, ...) paths."""
    out: dict[Path_, np.ndarray] = {}
    langs = [str(r["language"]) for r in rows]
    for lang in dict.fromkeys(langs):
        bias, averaged, swapped = (np.full(len(rows), np.nan) for _ in range(3))
        for i, r in enumerate(rows):
            if langs[i] != lang:
                continue
            first, second = _kept(r, toolkit), _kept(_swapped_row(r), toolkit)
            if second is not None:
                swapped[i] = ratio(*second) * 100
            if first is not None and second is not None:
                bias[i] = ((first[1] - second[1]) + (second[0] - first[0])) / 2
                averaged[i] = ratio((first[0] + second[0]) / 2, (first[1] + second[1]) / 2) * 100
        out[("judge_swap", lang, "position_bias")] = bias
        out[("judge_swap", lang, "swap_averaged", "overall")] = averaged
        out[("judge_swap", lang, "swapped_overall")] = swapped
    return out


def _swapped_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"reference_score": row.get("swap_reference_score"), "candidate_score": row.get("swap_candidate_score")}


def _kept(row: Mapping[str, Any], toolkit: bool) -> tuple[float, float] | None:
    """A scored row's (s1, s2) when the summary counts it: both scores read (toolkit: a reference above 0)."""
    s1, s2 = row["reference_score"], row["candidate_score"]
    if s1 is None or s2 is None or (toolkit and s1 == 0):
        return None
    return float(s1), float(s2)


def _row_notes(label: str, lang: str, m: dict[str, Any]) -> list[str]:
    """Footnotes for one row: unparsed / tolerant / zero-reference counts, groups outside the table."""
    where = f"{label} / {language_name(lang)}"
    notes = []
    if m.get("n_unparsed"):
        scored = "nothing scored: n/a, not 0" if not m.get("n_scored") else "scores over the parsed ones"
        notes.append(f"{where}: {m['n_unparsed']} of {m.get('n')} judge replies unparsed ({scored}).")
    if m.get("n_tolerant"):
        notes.append(f"{where}: {m['n_tolerant']} scores read by the tolerant parser (toolkit protocol).")
    if m.get("n_zero_reference"):
        notes.append(f"{where}: {m['n_zero_reference']} samples with a reference scored 0 left out (toolkit).")
    other = {k: v.get("n") for k, v in (m.get("other_groups") or {}).items()}
    if other:
        listed = ", ".join(f"{k!s} ({n})" for k, n in other.items())
        notes.append(f"{where}: groups the released table leaves out (counted in Overall and domains): {listed}.")
    return notes
