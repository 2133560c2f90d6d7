"""Path-VQA (authors' release): ``qas/{train,val,test}/{split}_qa.pkl`` + ``images/{split}/NAME.jpg``.

Each pickle holds a list of ``{"image": "train_0422", "question": ..., "answer": ...}``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import RecordError
from ..schema import Record
from .common import BuildReport, check_image, require, split_name, vqa_record

SOURCE = "path-vqa"
SPLITS = ("train", "val", "test")


class _DataOnlyUnpickler(pickle.Unpickler):
    """Refuses every class/function reference: the annotation files only hold lists, dicts, strings."""

    def find_class(self, module: str, name: str) -> Any:
        raise RecordError(f"refusing to unpickle {module}.{name}: Path-VQA annotations hold plain data only")


def load_pickle(path: Path) -> Any:
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    with path.open("rb") as fh:
        try:
            return _DataOnlyUnpickler(fh).load()
        except (pickle.UnpicklingError, EOFError) as exc:
            raise RecordError(f"{path}: not a readable pickle ({exc})") from exc


def build(root: Path, report: BuildReport) -> Iterator[Record]:
    present = [s for s in SPLITS if (root / "qas" / s / f"{s}_qa.pkl").is_file()]
    if not present:
        raise RecordError(f"{root}: no qas/<split>/<split>_qa.pkl found (is this the pvqa folder?)")
    for split in present:
        path = root / "qas" / split / f"{split}_qa.pkl"
        items = load_pickle(path)
        if not isinstance(items, list):
            raise RecordError(f"{path}: expected a list of question/answer dicts")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise RecordError(f"{path}[{i}]: expected a dict")
            require(item, ("image", "question", "answer"), f"{path}[{i}]")
            rid = f"{SOURCE}-{split}-{i}"
            image = f"images/{split}/{item['image']}.jpg"
            if not check_image(root, image, rid, report):
                continue
            yield vqa_record(
                rid,
                image,
                str(item["question"]),
                str(item["answer"]),
                source=SOURCE,
                modality="histology",
                split=split_name(split),
                provenance={"dataset": "Path-VQA", "image": item["image"], "index": i},
            )
