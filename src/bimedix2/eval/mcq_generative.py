"""Generative MCQ (`--mcq-mode generative`): ask the question with its options, read the answer letter.

For endpoints that return no log-probabilities (lm-eval's log-likelihood scoring needs them), the
model is asked each question with its lettered options (as many as the dataset has: A-D, A-E;
PubMedQA's yes / no / maybe as A-C) and a fixed instruction to answer with the letter only; the
letter is read from the reply by `parse_letter`, a strict parser. A reply it cannot read (no letter,
or two different letters named) is counted as unparsed, never scored as wrong: accuracy is over
the parsed replies, reported with the unparsed count beside it, and `null` when none parse.

This is a different protocol from the paper's (lm-eval log-likelihood over the options): its
numbers are labelled `mcq_mode: generative` in results.json and in the report, never mixed in.

The Arabic MCQ data (`eval prepare-mcq-ar`, or generic files) keeps the option letters Latin
(A, B, C, D), as the translation rules ask, so the prompt shows Latin letters in both languages;
a reply naming an Arabic letter (أ ب ج د هـ, e.g. "الإجابة: ب") is mapped to its Latin letter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EvalDataError
from .datasets.mcq import DECISIONS, LETTERS, McqRecord, read_generic
from .lm_eval_tasks import PAPER_DATASETS, local_splits, upstream_config, upstream_yaml
from .mcq import find_source

# the fixed instructions (the `{letters}` are the question's own: "A, B, C or D")
INSTRUCTIONS = {
    "en": "Answer with the letter of the correct option ({letters}) only.",
    "ar": "أجب بحرف الخيار الصحيح فقط ({letters}).",
}
OR_WORD = {"en": "or", "ar": "أو"}
PROMPT_TEMPLATE = "{context}{question}\n\n{options}\n\n{instruction}"
# what the predictions cache's fingerprint holds as the prompt: a changed template or instruction is another cache
PROMPT_KEY = PROMPT_TEMPLATE + "\n" + json.dumps(INSTRUCTIONS, ensure_ascii=False, sort_keys=True)

ARABIC_LETTERS = {"أ": "A", "ا": "A", "ب": "B", "ج": "C", "د": "D", "هـ": "E", "ه": "E"}
_AR = "هـ|أ|ا|ب|ج|د|ه"  # longest first
_AR_LETTER = rf"(?:{_AR})(?![\u0621-\u064A])"  # an Arabic letter standing alone (not the start of a word)
_OPEN, _CLOSE = r"[\(\[]?", r"[\)\]]?"
_LATIN_ALONE = r"(?<![A-Za-z0-9'’\-])([A-J])(?![A-Za-z0-9'’\-])"
_WHOLE = re.compile(rf"^{_OPEN}([A-Ja-j]|{_AR}){_CLOSE}[.:)]?$")
_LEADING = re.compile(rf"^(?:{_OPEN}([A-J]){_CLOSE}[.:)]|\(([A-J])\))\s+\S")
_LABEL_EN = re.compile(
    rf"(?i:(?:the\s+)?(?:(?:correct|right|final|best)\s+)?(?:answer|option|choice))(?:\s+(?i:is))?\s*[:：\-]?\s*"
    rf"{_OPEN}([A-J]){_CLOSE}(?![A-Za-z0-9])"
)
_LABEL_AR = re.compile(
    rf"(?:الإجابة|الاجابة|الإجابه|الاجابه|الجواب)(?:\s+(?:الصحيحة|الصحيحه))?(?:\s+(?:هي|هو))?\s*[:：\-]?\s*"
    rf"{_OPEN}([A-J]|{_AR}){_CLOSE}(?![A-Za-z0-9\u0621-\u064A])"
)
_ARABIC_ALONE = re.compile(rf"(?<![\u0621-\u064A])({_AR_LETTER})")
_MARKUP = re.compile(r"[*_`]+")


def _latin(letter: str) -> str:
    return ARABIC_LETTERS.get(letter, letter.upper())


def parse_letter(reply: str, n_options: int, options: tuple[str, ...] = ()) -> str | None:
    """The option letter a reply gives ("A".."J" within `n_options`), or None when it gives none or several.

    Accepted: the letter alone ("B", "B.", "(B)", "b"), the letter leading the option ("B. Iron",
    "(B) Iron"), or after an answer label ("Answer: B", "The answer is B", "The correct option is (B)",
    "الإجابة: ب", "الإجابة الصحيحة هي B"); Markdown emphasis is ignored. Refused: no such letter, a
    letter past the options, or a reply that names another option letter anywhere (the chosen option's
    own text is not counted, so "B. Vitamin C" is B when option B is "Vitamin C").
    """
    text = _MARKUP.sub("", reply).strip()
    if not text:
        return None
    candidates: list[str] = []
    whole = _WHOLE.match(text)
    if whole:
        candidates.append(_latin(whole.group(1)))
    else:
        lead = _LEADING.match(text)
        if lead:
            candidates.append(lead.group(1) or lead.group(2))
        candidates += [m.group(1) for m in _LABEL_EN.finditer(text)]
        candidates += [_latin(m.group(1)) for m in _LABEL_AR.finditer(text)]
    if len(set(candidates)) != 1:
        return None
    letter = candidates[0]
    index = LETTERS.find(letter)
    if index < 0 or index >= n_options:
        return None
    rest = text
    if index < len(options) and options[index].strip():
        rest = re.sub(re.escape(options[index].strip()), " ", rest, flags=re.IGNORECASE)
    named = {m.group(1) for m in re.finditer(_LATIN_ALONE, rest) if LETTERS.find(m.group(1)) < n_options}
    named |= {_latin(m.group(1)) for m in _ARABIC_ALONE.finditer(rest)}
    return letter if named <= {letter} else None


def _letters_phrase(n: int, language: str) -> str:
    letters = list(LETTERS[:n])
    return f"{', '.join(letters[:-1])} {OR_WORD.get(language, 'or')} {letters[-1]}" if n > 1 else letters[0]


def generative_prompt(record: McqRecord, language: str) -> str:
    """The question, its lettered options and the fixed instruction to answer with the letter."""
    instruction = INSTRUCTIONS.get(language, INSTRUCTIONS["en"])
    return PROMPT_TEMPLATE.format(
        context=f"{record.context}\n\n" if record.context else "",
        question=record.question,
        options="\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(record.options)),
        instruction=instruction.format(letters=_letters_phrase(len(record.options), language)),
    )


@dataclass(frozen=True)
class GenerativeQuestion:
    """One question of one (dataset, language), with where it came from."""

    dataset: str
    language: str
    record: McqRecord
    source: str

    @property
    def id(self) -> str:
        return f"{self.language}/{self.dataset}/{self.record.id}"


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        return list(data) if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def hub_record(dataset: str, row: dict[str, Any], where: str) -> McqRecord:
    """A Hub-layout row (the fields lm-eval's task reads, see `datasets.mcq.hub_doc`) as an MCQ record."""
    try:
        if dataset == "medqa":
            question = " ".join(str(row[k]) for k in ("sent1", "sent2") if str(row.get(k) or "").strip())
            options = tuple(str(row[f"ending{i}"]) for i in range(4))
            return McqRecord(str(row.get("id", where)), question, options, int(row["label"]))
        if dataset == "medmcqa":
            options = tuple(str(row[k]) for k in ("opa", "opb", "opc", "opd"))
            return McqRecord(str(row.get("id", where)), str(row["question"]), options, int(row["cop"]))
        if dataset == "pubmedqa":
            context = " ".join(str(c) for c in row.get("CONTEXTS") or [])
            gold = DECISIONS.index(str(row["final_decision"]).strip().lower())
            return McqRecord(str(row.get("PUBMED_ID", where)), str(row["QUESTION"]), DECISIONS, gold, context)
        if dataset.startswith("mmlu_"):
            options = tuple(str(o) for o in row["choices"])
            return McqRecord(str(row.get("id", where)), str(row["question"]), options, int(row["answer"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise EvalDataError(f"{where}: not a {dataset} row in the Hub layout ({type(exc).__name__}: {exc})") from None
    raise EvalDataError(f"{where}: no Hub layout known for dataset {dataset!r}")


def read_questions(source: Path, dataset: str) -> list[McqRecord]:
    """The records of one dataset: a generic `<dataset>.jsonl`, or its Hub-layout folder's scored split."""
    if source.is_file():
        return read_generic(source)
    entry = PAPER_DATASETS[dataset]
    upstream = upstream_config(upstream_yaml(entry))
    files = local_splits(source, entry, upstream)[str(upstream["test_split"])]
    out = []
    for path in files:
        out += [hub_record(dataset, row, f"{path}: row {i + 1}") for i, row in enumerate(_rows(path))]
    # ids are made unique per dataset (Hub rows may lack one)
    return [r if r.id else McqRecord(str(i), r.question, r.options, r.gold, r.context) for i, r in enumerate(out)]


def collect_questions(
    datasets: tuple[str, ...], languages: tuple[str, ...], data_root: Path, limit: int | None
) -> list[GenerativeQuestion]:
    """Every question of each (dataset, language) whose data exists (the first `limit` of each)."""
    out: list[GenerativeQuestion] = []
    for lang in languages:
        for dataset in datasets:
            source = find_source(data_root, lang, dataset)
            if source is None:
                continue
            records = read_questions(source, dataset)[: limit or None]
            seen: set[str] = set()
            for i, rec in enumerate(records):
                rec_id = rec.id if rec.id not in seen else f"{rec.id}#{i}"
                seen.add(rec_id)
                out.append(
                    GenerativeQuestion(
                        dataset, lang, McqRecord(rec_id, rec.question, rec.options, rec.gold, rec.context), str(source)
                    )
                )
    if not out:
        raise EvalDataError(
            f"no MCQ data found under {data_root}: expected <lang>/<dataset>.jsonl files or Hub-layout folders "
            f"(datasets: {', '.join(datasets)})"
        )
    return out
