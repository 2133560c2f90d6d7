"""PMC-VQA: ``train.csv`` / ``test.csv`` + ``images/<Figure_path>``.

Columns: Figure_path, Question, Answer, Choice A, Choice B, Choice C, Choice D, Answer_label
(choices are written like "A:CT scan"). Records keep the choices and answer with the option.
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


def build(root: Path, report: BuildReport) -> Iterator[Record]:
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
                rid = f"{SOURCE}-{FILES[name]}-{row_no - 1}"
                label = (row["Answer_label"] or "").strip().upper()
                if label not in "ABCD" or not label:
                    raise RecordError(f"{path}:{row_no}: Answer_label {row['Answer_label']!r} is not A-D")
                options = {k: _PREFIX.sub("", row[f"Choice {k}"] or "").strip() for k in "ABCD"}
                image = f"images/{row['Figure_path'].strip()}"
                if not check_image(root, image, rid, report):
                    continue
                question = row["Question"].strip() + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
                yield vqa_record(
                    rid,
                    image,
                    question,
                    mcq_answer(label, row["Answer"] or options[label]),
                    source=SOURCE,
                    split=FILES[name],
                    provenance={"dataset": "PMC-VQA", "figure": row["Figure_path"], "row": row_no},
                )
