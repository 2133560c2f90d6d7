"""`bimedix2 eval prepare-mcq-ar`: the translation pipeline's Arabic MCQ records -> Arabic MCQ tasks for lm-eval.

Input: the pipeline's output (`translated.jsonl`, or its job folder) - BiMed-V records whose `source` is
the English MCQ dataset (medqa, medmcqa, pubmedqa, usmle, mmlu_<subject>), `task` "mcq", `language`
"ar", a human turn that is the translated `data.sources.common.mcq_prompt` (context, question, lettered
options - the letters kept Latin, as the translation rules ask - and an instruction line) and a gpt
turn that is the translated `mcq_answer` ("The correct answer is B. ..."). Each question is read back
into a generic MCQ record, then written in the Hub layout lm-eval's task for that dataset reads
(`OUT/ar/medqa/test.json`, `OUT/ar/medmcqa/validation.jsonl`, `OUT/ar/pubmedqa/test.jsonl`,
`OUT/ar/mmlu/<subject>/test.jsonl`; USMLE: `OUT/ar/usmle.jsonl`), and the task YAMLs that include
lm-eval's own tasks go to `OUT/lm_eval_tasks/` - the same format the English data runs in, so
`bimedix2 eval run mcq --data mcq=OUT` or `lm_eval --include_path OUT/lm_eval_tasks` score it.

The gold option is the answer letter in the gpt turn, else the one option whose text (Arabic
normalised: diacritics, tatweel, alef/yaa/taa-marbuta forms, digits) the answer repeats.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.io import iter_records
from ..data.schema import Record
from ..errors import EvalDataError
from ..fileio import atomic_write_json, atomic_write_jsonl
from .datasets.mcq import LETTERS, McqRecord, hub_doc
from .lm_eval_tasks import PAPER_DATASETS, upstream_config, upstream_yaml
from .mcq import McqTask, write_tasks
from .metrics.normalize import normalize_arabic

ARABIC_LETTERS = {"أ": "A", "ا": "A", "ب": "B", "ج": "C", "د": "D", "ه": "E", "هـ": "E", "و": "F"}
_OPTION = re.compile(r"^\s*\(?([A-J]|أ|ا|ب|ج|د|هـ|ه|و)\s*[.)\-:]\s*(\S.*?)\s*$")
_LABEL = r"\s*[:：]\s*"
_QUESTION = re.compile(rf"^\s*(?:السؤال|سؤال|Question){_LABEL}", re.IGNORECASE)
_CONTEXT = re.compile(rf"^\s*(?:السياق|سياق|النص|Context){_LABEL}", re.IGNORECASE)
_BARE = re.compile(r"(?<![A-Za-z])([A-J])(?![A-Za-z])")
_LETTER = re.compile(r"(?<![A-Za-z])([A-J])\s*[.):]")  # "B." / "B)" / "B:" - a bare "C" may be "vitamin C"


@dataclass
class PrepareReport:
    """What was written and what was left out (written to OUT/ar/prepare_report.json)."""

    written: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def skip(self, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        if detail and len(self.problems) < 200:
            self.problems.append(detail)


def _letter(label: str) -> str:
    return ARABIC_LETTERS.get(label, label)


def split_question(text: str) -> tuple[str, tuple[str, ...], str]:
    """(question, options, context) from a translated `mcq_prompt`; EvalDataError if it has no option block."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if (m := _OPTION.match(line)) and _letter(m.group(1)) == "A"), None)
    if first is None:
        raise EvalDataError("no option lines (A. ..., B. ...) in the question turn")
    options = []
    for line in lines[first:]:
        m = _OPTION.match(line)
        if not m or _letter(m.group(1)) != LETTERS[len(options)]:
            break
        options.append(m.group(2))
    header = [line.strip() for line in lines[:first] if line.strip()]
    if header and header[-1].endswith((":", "：")) and len(header[-1].split()) <= 3:
        header = header[:-1]  # the "Options:" label
    start = max((i for i, line in enumerate(header) if _QUESTION.match(line)), default=None)
    if start is None:
        return " ".join(_CONTEXT.sub("", h) for h in header).strip(), tuple(options), ""
    question = "\n".join([_QUESTION.sub("", header[start]), *header[start + 1 :]]).strip()
    context = "\n".join([_CONTEXT.sub("", h) for h in header[:start]]).strip()
    return question, tuple(options), context


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", normalize_arabic(text).lower()).strip()


def _holds(text: str, option: str) -> bool:
    """Whether `text` holds `option` as whole words, both Arabic-normalised."""
    key = _key(option)
    return bool(key) and f" {key} " in f" {_key(text)} "


def gold_option(answer: str, options: tuple[str, ...]) -> int | None:
    """The option the answer turn's first line names ("The correct answer is B. <text>").

    In order: a "B." letter followed by that option's text; the one option whose text the line holds
    (compared Arabic-normalised); a "B." letter alone; the line's only bare option letter.
    """
    line = answer.strip().splitlines()[0] if answer.strip() else ""
    found = [(LETTERS.index(m.group(1)), m.end()) for m in _LETTER.finditer(line)]
    found = [(i, end) for i, end in found if i < len(options)]
    for i, end in found:
        if _holds(line[end:], options[i]):
            return i
    hits = [i for i, o in enumerate(options) if _holds(line, o)]
    if len(hits) == 1:
        return hits[0]
    if found:
        return found[0][0]
    bare = {LETTERS.index(m.group(1)) for m in _BARE.finditer(line) if LETTERS.index(m.group(1)) < len(options)}
    return bare.pop() if len(bare) == 1 else None


def mcq_from_record(record: Record) -> McqRecord:
    """A generic MCQ record from one translated BiMed-V MCQ record (EvalDataError naming what is wrong)."""
    human = [t.value for t in record.conversations if t.speaker == "human"]
    gpt = [t.value for t in record.conversations if t.speaker == "gpt"]
    if not human or not gpt:
        raise EvalDataError("needs a question turn and an answer turn")
    question, options, context = split_question(human[0])
    gold = gold_option(gpt[0], options)
    if gold is None:
        raise EvalDataError(f"cannot tell the answer option from {gpt[0][:80]!r}")
    return McqRecord(str(record.provenance.get("translated_from") or record.id), question, options, gold, context)


def wanted_split(dataset: str, split: str) -> str | None:
    """The record split kept: lm-eval's test split of the dataset for "auto" (MedMCQA: validation); None = all."""
    if split == "all":
        return None
    if split != "auto":
        return split
    entry = PAPER_DATASETS.get(dataset)
    return str(upstream_config(upstream_yaml(entry))["test_split"]) if entry else "test"


def _target(out: Path, dataset: str, split: str) -> Path:
    entry = PAPER_DATASETS.get(dataset)
    if entry is None:
        return out / "ar" / f"{dataset}.jsonl"
    folder = out / "ar" / entry.folder / (entry.config if entry.config_required else "")
    return folder / (f"{split}.json" if dataset == "medqa" else f"{split}.jsonl")  # GBaker ships test.json


def _doc(dataset: str, rec: McqRecord) -> dict[str, Any]:
    if dataset in PAPER_DATASETS:
        return hub_doc(dataset, rec)
    options = {LETTERS[i]: o for i, o in enumerate(rec.options)}
    generic = {"id": rec.id, "question": rec.question, "options": options, "answer": rec.gold}
    return {**generic, "context": rec.context} if rec.context else generic


def collect(source: Path, split: str, report: PrepareReport) -> dict[str, list[dict[str, Any]]]:
    """{dataset: docs} of the Arabic MCQ records of `source` in the wanted split."""
    docs: dict[str, list[dict[str, Any]]] = {}
    for record in iter_records(source):
        dataset = record.source
        if record.task != "mcq" or record.language != "ar":
            report.skip("not an Arabic MCQ record")
            continue
        if dataset not in PAPER_DATASETS and dataset != "usmle":
            report.skip(f"no MCQ task for source {dataset!r}")
            continue
        keep = wanted_split(dataset, split)
        if keep is not None and record.split != keep:
            report.skip(f"{dataset}: split {record.split} (kept: {keep})")
            continue
        try:
            docs.setdefault(dataset, []).append(_doc(dataset, mcq_from_record(record)))
        except EvalDataError as exc:
            report.skip(f"{dataset}: unreadable", f"record {record.id}: {exc}")
    return docs


def prepare_mcq_arabic(source: Path, out: Path, split: str = "auto") -> tuple[dict[str, McqTask], PrepareReport]:
    """Write the Arabic MCQ data and lm-eval task YAMLs under `out`; returns the tasks and the report."""
    path = source / "translated.jsonl" if source.is_dir() else source
    if not path.is_file():
        raise EvalDataError(f"{path}: not found (give the translation output translated.jsonl or its job folder)")
    report = PrepareReport()
    docs = collect(path, split, report)
    if not docs:
        raise EvalDataError(f"{path}: no Arabic MCQ records to prepare (skipped: {dict(report.skipped)})")
    for dataset, rows in docs.items():
        # named as the split lm-eval scores, whatever records were kept
        atomic_write_jsonl(_target(out, dataset, str(wanted_split(dataset, "auto"))), rows)
        report.written[dataset] = len(rows)
    tasks = write_tasks(sorted(docs), ["ar"], out, out / "lm_eval_tasks")
    summary = {
        "source": str(path),
        "split": split,
        "written": dict(report.written),
        "skipped": dict(report.skipped),
        "problems": report.problems,
        "tasks": {name: task.definition for name, task in tasks.items()},
    }
    atomic_write_json(out / "ar" / "prepare_report.json", summary)
    return tasks, report
