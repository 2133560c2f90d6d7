"""SLAKE 1.0: ``train.json``, ``validate.json``, ``test.json`` + ``imgs/xmlabN/source.jpg``.

Items: img_id, img_name, question, answer, q_lang ("en"/"zh"), location, modality
("CT"/"MRI"/"X-Ray"), answer_type, content_type, qid. Chinese rows are filtered out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import RecordError
from ..schema import Record
from .common import BuildReport, check_image, load_json, require, vqa_record

SOURCE = "slake"
FILES = {"train.json": "train", "validate.json": "validation", "test.json": "test"}
MODALITY = {"CT": "CT", "MRI": "MRI", "X-Ray": "X-ray", "X-ray": "X-ray"}


def build(root: Path, report: BuildReport) -> Iterator[Record]:
    present = [name for name in FILES if (root / name).is_file()]
    if not present:
        raise RecordError(f"{root}: none of {list(FILES)} found (is this the Slake1.0 folder?)")
    for name in present:
        items = load_json(root / name)
        if not isinstance(items, list):
            raise RecordError(f"{root / name}: expected a JSON array")
        for i, item in enumerate(items):
            require(item, ("qid", "img_name", "question", "answer", "q_lang"), f"{root / name}[{i}]")
            if item["q_lang"] != "en":
                report.skip("not English")
                continue
            rid = f"{SOURCE}-{FILES[name]}-{item['qid']}"
            image = f"imgs/{item['img_name']}"
            if not check_image(root, image, rid, report):
                continue
            yield vqa_record(
                rid,
                image,
                str(item["question"]),
                str(item["answer"]),
                source=SOURCE,
                modality=MODALITY.get(str(item.get("modality", "")), "other"),
                split=FILES[name],
                provenance={
                    "dataset": "SLAKE",
                    "qid": item["qid"],
                    "img_id": item.get("img_id"),
                    "location": item.get("location", ""),
                    "answer_type": item.get("answer_type", ""),
                    "content_type": item.get("content_type", ""),
                },
            )
