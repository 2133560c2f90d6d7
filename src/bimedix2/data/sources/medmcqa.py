"""MedMCQA: ``train.json``, ``dev.json``, ``test.json`` (JSON Lines despite the name).

Lines: id, question, opa, opb, opc, opd, cop (correct option, 1-4; missing/-1 in the
unlabelled test file), exp (explanation), subject_name, topic_name, choice_type.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import RecordError
from ...fileio import iter_jsonl
from ..schema import Record, Turn
from .common import BuildReport, mcq_answer, mcq_prompt, require, split_name

SOURCE = "medmcqa"
FILES = ("train.json", "dev.json", "test.json")


def build(root: Path, report: BuildReport) -> Iterator[Record]:
    present = [name for name in FILES if (root / name).is_file()]
    if not present:
        raise RecordError(f"{root}: none of {list(FILES)} found (is this the MedMCQA folder?)")
    for name in present:
        split = split_name(name.removesuffix(".json"))
        path = root / name
        for line_no, item in iter_jsonl(path, RecordError):
            require(item, ("id", "question", "opa", "opb", "opc", "opd"), f"{path}:{line_no}")
            cop = item.get("cop")
            if cop in (None, -1, ""):
                report.skip("no answer key")
                continue
            if cop not in (1, 2, 3, 4):
                raise RecordError(f"{path}:{line_no}: cop must be 1-4, got {cop!r}")
            options = {"A": item["opa"], "B": item["opb"], "C": item["opc"], "D": item["opd"]}
            letter = "ABCD"[cop - 1]
            yield Record(
                id=f"{SOURCE}-{item['id']}",
                conversations=(
                    Turn("human", mcq_prompt(item["question"], options)),
                    Turn("gpt", mcq_answer(letter, options[letter], item.get("exp") or "")),
                ),
                language="en",
                source=SOURCE,
                task="mcq",
                split=split,
                provenance={
                    "dataset": "MedMCQA",
                    "id": item["id"],
                    "subject": item.get("subject_name", ""),
                    "topic": item.get("topic_name") or "",
                },
            )
