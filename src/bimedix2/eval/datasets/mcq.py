"""Medical MCQ records: our generic JSONL layout, and its conversion into the Hub layouts lm-eval reads.

Generic layout, one file per dataset and language, `<data>/<lang>/<dataset>.jsonl`::

    {"id": "q1", "question": "...", "options": {"A": "...", "B": "..."} | ["...", ...],
     "answer": "A" | 0, "context": "..." (optional; PubMedQA's abstract)}

`hub_doc` turns a record into a row of the Hub dataset an lm-eval task loads (MedQA ->
`GBaker/MedQA-USMLE-4-options-hf` fields, MedMCQA -> `openlifescienceai/medmcqa`, PubMedQA ->
`bigbio/pubmed_qa` source schema, MMLU -> `cais/mmlu`), so lm-eval's own `doc_to_text` renders it.
Where an answer is compared as text (PubMedQA's yes/no/maybe options), Arabic is normalised first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import EvalDataError
from ..metrics.normalize import normalize_arabic
from .base import read_jsonl

LETTERS = "ABCDEFGHIJ"
DECISIONS = ("yes", "no", "maybe")  # PubMedQA's final_decision values, lm-eval's pubmedqa doc_to_choice
_DECISION_WORDS = {
    "yes": ("yes", "نعم"),
    "no": ("no", "لا"),
    "maybe": ("maybe", "ربما", "قد يكون", "ممكن", "محتمل"),
}
_PUNCT = re.compile(r"[\s.,;:!?؟،؛\"'()\[\]]+")
# our prompts (toolkit protocol only): question, lettered options, an answer label in the question's language
TOOLKIT_PROMPTS = {"en": "{question}\n{options}\nAnswer:", "ar": "{question}\n{options}\nالإجابة:"}


@dataclass(frozen=True)
class McqRecord:
    """One multiple-choice question with its gold option index."""

    id: str
    question: str
    options: tuple[str, ...]
    gold: int
    context: str = ""


def _options(record: dict[str, Any], where: str) -> tuple[str, ...]:
    options = record.get("options")
    if isinstance(options, dict):
        keys = sorted(options)
        if keys != list(LETTERS[: len(keys)]):
            raise EvalDataError(f"{where}: option keys must be A, B, C...; got {keys}")
        return tuple(str(options[k]) for k in keys)
    if isinstance(options, list) and options:
        return tuple(str(o) for o in options)
    raise EvalDataError(f"{where}: missing or empty field 'options'")


def _gold(record: dict[str, Any], n: int, where: str) -> int:
    answer = record.get("answer")
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < n:
        return answer
    if isinstance(answer, str) and len(answer.strip()) == 1 and LETTERS.find(answer.strip().upper()) in range(n):
        return LETTERS.index(answer.strip().upper())
    raise EvalDataError(f"{where}: answer {answer!r} is not an option letter or index among {n} options")


def mcq_record(record: dict[str, Any], where: str, default_id: str) -> McqRecord:
    """One generic-layout record, checked (EvalDataError naming `where` and the field)."""
    if not str(record.get("question", "")).strip():
        raise EvalDataError(f"{where}: missing or empty field 'question'")
    if len(options := _options(record, where)) > len(LETTERS):
        raise EvalDataError(f"{where}: at most {len(LETTERS)} options, got {len(options)}")
    return McqRecord(
        id=str(record.get("id", default_id)),
        question=str(record["question"]).strip(),
        options=options,
        gold=_gold(record, len(options), where),
        context=str(record.get("context") or "").strip(),
    )


def read_generic(path: Path) -> list[McqRecord]:
    """Every record of a generic-layout MCQ JSONL file."""
    return [mcq_record(rec, f"{path}:{lineno}", str(lineno)) for lineno, rec in read_jsonl(path)]


def _key(text: str) -> str:
    return _PUNCT.sub(" ", normalize_arabic(text).lower()).strip()


def decision_of(option: str) -> str | None:
    """yes / no / maybe for an option written in English or Arabic (normalised), else None."""
    key = _key(option)
    return next((d for d, words in _DECISION_WORDS.items() if key in {_key(w) for w in words}), None)


def _four(rec: McqRecord, dataset: str, where: str) -> tuple[str, ...]:
    if len(rec.options) != 4:
        raise EvalDataError(f"{where}: {dataset} in lm-eval has 4 options; record {rec.id} has {len(rec.options)}")
    return rec.options


def hub_doc(dataset: str, rec: McqRecord, where: str = "") -> dict[str, Any]:
    """`rec` as a row of the Hub dataset lm-eval's task for `dataset` loads (the fields its YAML reads)."""
    where = where or f"record {rec.id}"
    if dataset == "medqa":  # GBaker/MedQA-USMLE-4-options-hf
        opts = _four(rec, dataset, where)
        return {"id": rec.id, "sent1": rec.question, "sent2": "", **{f"ending{i}": o for i, o in enumerate(opts)},
                "label": rec.gold}  # fmt: skip
    if dataset == "medmcqa":  # openlifescienceai/medmcqa (cop: 0-3)
        a, b, c, d = _four(rec, dataset, where)
        return {"id": rec.id, "question": rec.question, "opa": a, "opb": b, "opc": c, "opd": d, "cop": rec.gold,
                "choice_type": "single", "exp": "", "subject_name": "", "topic_name": ""}  # fmt: skip
    if dataset == "pubmedqa":  # bigbio/pubmed_qa, pubmed_qa_labeled_fold0_source
        decision = decision_of(rec.options[rec.gold])
        if decision is None:
            raise EvalDataError(
                f"{where}: PubMedQA's answer must be yes / no / maybe (or نعم / لا / ربما); "
                f"got {rec.options[rec.gold]!r}"
            )
        return {"QUESTION": rec.question, "CONTEXTS": [rec.context] if rec.context else [], "LABELS": [],
                "MESHES": [], "YEAR": "", "reasoning_required_pred": "", "reasoning_free_pred": "",
                "final_decision": decision, "LONG_ANSWER": ""}  # fmt: skip
    if dataset.startswith("mmlu_"):  # cais/mmlu
        return {"question": rec.question, "subject": dataset.removeprefix("mmlu_"),
                "choices": list(_four(rec, dataset, where)), "answer": rec.gold}  # fmt: skip
    raise EvalDataError(f"{where}: no lm-eval Hub layout for dataset {dataset!r}")


def lettered_query(question: str, options: Sequence[str]) -> str:
    """lm-eval medqa_4options' `doc_to_text` (preprocess_medqa.py) for any number of options."""
    answers = "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(options))
    return f"Question: {question}\n{answers}Answer:"


def toolkit_query(rec: McqRecord, language: str) -> str:
    """Our own prompt (toolkit protocol): question, options, an answer label in the question's language."""
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(rec.options))
    question = f"{rec.context}\n{rec.question}" if rec.context else rec.question
    return TOOLKIT_PROMPTS.get(language, TOOLKIT_PROMPTS["en"]).format(question=question, options=lines)


def scored_doc(rec: McqRecord, query: str) -> dict[str, Any]:
    """A doc of our own lm-eval task: the rendered query, option letters as choices, the gold index."""
    return {"id": rec.id, "query": query, "choices": list(LETTERS[: len(rec.options)]), "gold": rec.gold}
