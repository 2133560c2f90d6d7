"""PMC-VQA: ``train.csv`` / ``test.csv`` + ``images/<Figure_path>``.

Columns: Figure_path, Question, Answer, Choice A, Choice B, Choice C, Choice D, Answer_label
(choices are written like "A:CT scan").

Two forms of the same rows: ``mcq`` (builder ``pmc-vqa``) keeps the choices and answers with the
option ("The correct answer is B. CT scan"); ``open`` (builder ``pmc-vqa-open``) is the short-answer
form, Question -> the Answer text, no choices (an empty Answer falls back to the labelled choice).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from ...errors import RecordError
from ..schema import Record
from .common import BuildReport, check_image, mcq_answer, vqa_record

SOURCE = "pmc-vqa"
FILES = {"train.csv": "train", "test.csv": "test"}
COLUMNS = (
    "Figure_path",
    "Question",
    "Answer",
    "Choice A",
    "Choice B",
    "Choice C",
    "Choice D",
    "Answer_label",
)
_PREFIX = re.compile(r"^\s*[A-D]\s*[:.)]\s*")


FORMS = ("mcq", "open")


def build(root: Path, report: BuildReport, form: str = "mcq") -> Iterator[Record]:
    if form not in FORMS:
        raise RecordError(f"PMC-VQA form must be one of {list(FORMS)}, got {form!r}")
    present = [name for name in FILES if (root / name).is_file()]
    if not present:
        raise RecordError(f"{root}: none of {list(FILES)} found (is this the PMC-VQA folder?)")
    for name in present:
        path = root / name
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RecordError(f"{path}: missing column(s) {missing}")
            for row_no, row in enumerate(reader, 2):
                rid = f"{SOURCE}{'-open' if form == 'open' else ''}-{FILES[name]}-{row_no - 1}"
                label = (row["Answer_label"] or "").strip().upper()
                if label not in "ABCD" or not label:
                    raise RecordError(f"{path}:{row_no}: Answer_label {row['Answer_label']!r} is not A-D")
                options = {k: _PREFIX.sub("", row[f"Choice {k}"] or "").strip() for k in "ABCD"}
                image = f"images/{row['Figure_path'].strip()}"
                if not check_image(root, image, rid, report):
                    continue
                answer = (row["Answer"] or "").strip() or options[label]
                if not (row["Question"] or "").strip() or not answer:
                    raise RecordError(f"{path}:{row_no}: empty Question or Answer")
                if form == "open":
                    question, reply = row["Question"], answer
                else:
                    question = row["Question"].strip() + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
                    reply = mcq_answer(label, answer)
                yield vqa_record(
                    rid,
                    image,
                    question,
                    reply,
                    source=SOURCE,
                    split=FILES[name],
                    provenance={"dataset": "PMC-VQA", "form": form, "figure": row["Figure_path"], "row": row_no},
                )
