"""MedQA (USMLE, English): JSONL files ``phrases_no_exclude_{train,dev,test}.jsonl`` (4 options,
``questions/US/4_options/``) or ``{train,dev,test}.jsonl`` (5 options, ``questions/US/``).

Lines: question, options {"A": ...}, answer (text), answer_idx (letter), meta_info.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import RecordError
from ...fileio import iter_jsonl
from ..schema import Record, Turn
from .common import BuildReport, mcq_answer, mcq_prompt, require, split_name

SOURCE = "medqa"
SPLITS = ("train", "dev", "test")


def _files(root: Path) -> list[tuple[str, Path]]:
    found = []
    for split in SPLITS:
        for name in (f"phrases_no_exclude_{split}.jsonl", f"{split}.jsonl"):
            if (root / name).is_file():
                found.append((split, root / name))
                break
    if not found:
        raise RecordError(f"{root}: no MedQA JSONL (phrases_no_exclude_<split>.jsonl or <split>.jsonl) found")
    return found


def build(root: Path, report: BuildReport) -> Iterator[Record]:
    for split, path in _files(root):
        for line_no, item in iter_jsonl(path, RecordError):
            require(item, ("question", "options", "answer_idx"), f"{path}:{line_no}")
            options = item["options"]
            letter = item["answer_idx"]
            if not isinstance(options, dict) or letter not in options:
                raise RecordError(f"{path}:{line_no}: answer_idx {letter!r} is not one of the options")
            yield Record(
                id=f"{SOURCE}-{split}-{line_no}",
                conversations=(
                    Turn("human", mcq_prompt(item["question"], options)),
                    Turn("gpt", mcq_answer(letter, options[letter])),
                ),
                language="en",
                source=SOURCE,
                task="mcq",
                split=split_name(split),
                provenance={"dataset": "MedQA", "line": line_no, "meta_info": item.get("meta_info", "")},
            )
