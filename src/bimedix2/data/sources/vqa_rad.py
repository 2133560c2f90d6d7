"""VQA-RAD (OSF release): ``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/``.

Each item: qid, image_name, image_organ, question, answer (string or number), answer_type,
question_type, phrase_type ("freeform"/"para" train, "test_freeform"/"test_para" test).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import RecordError
from ..schema import Record
from .common import BuildReport, check_image, load_json, require, vqa_record

SOURCE = "vqa-rad"
ANNOTATIONS = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"


def build(root: Path, report: BuildReport) -> Iterator[Record]:
    items = load_json(root / ANNOTATIONS)
    if not isinstance(items, list):
        raise RecordError(f"{root / ANNOTATIONS}: expected a JSON array")
    for i, item in enumerate(items):
        where = f"{root / ANNOTATIONS}[{i}]"
        require(item, ("qid", "image_name", "question", "answer"), where)
        rid = f"{SOURCE}-{item['qid']}"
        image = f"{IMAGE_DIR}/{item['image_name']}"
        if not check_image(root, image, rid, report):
            continue
        phrase = str(item.get("phrase_type", ""))
        yield vqa_record(
            rid,
            image,
            str(item["question"]),
            str(item["answer"]),
            source=SOURCE,
            split="test" if phrase.startswith("test") else "train",
            provenance={
                "dataset": "VQA-RAD",
                "qid": item["qid"],
                "organ": item.get("image_organ", ""),
                "answer_type": item.get("answer_type", ""),
                "question_type": item.get("question_type", ""),
            },
        )
