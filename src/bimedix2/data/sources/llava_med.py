"""LLaVA-Med: ``llava_med_instruct_60k_inline_mention.json`` (60K-IM conversations) and
``llava_med_alignment_500k.json`` (caption alignment), images under ``images/``.

Both are JSON arrays of LLaVA records ``{"id", "image", "conversations": [{"from", "value"}]}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...conversation import IMAGE_PLACEHOLDER
from ...errors import ConfigError, RecordError
from ..schema import Record, Turn, record_from_json
from .common import BuildReport, check_image, load_json, require

SOURCE = "llava-med"
FILES = {
    "instruct": ("llava_med_instruct_60k_inline_mention.json", "conversation"),
    "alignment": ("llava_med_alignment_500k.json", "caption"),
}


def build(root: Path, report: BuildReport, kind: str = "instruct") -> Iterator[Record]:
    if kind not in FILES:
        raise ConfigError(f"llava-med kind must be one of {list(FILES)}, got {kind!r}")
    name, task = FILES[kind]
    items = load_json(root / name)
    if not isinstance(items, list):
        raise RecordError(f"{root / name}: expected a JSON array")
    for i, item in enumerate(items):
        where = f"{root / name}[{i}]"
        require(item, ("id", "image", "conversations"), where)
        turns = list(record_from_json(item, where).conversations)
        if turns and IMAGE_PLACEHOLDER not in turns[0].value:  # alignment rows may omit it; LLaVA adds it
            turns[0] = Turn("human", f"{IMAGE_PLACEHOLDER}\n{turns[0].value}")
        rid = f"{SOURCE}-{kind}-{item['id']}"
        image = f"images/{item['image']}"
        if not check_image(root, image, rid, report):
            continue
        yield Record(
            id=rid,
            conversations=tuple(turns),
            images=(image,),
            language="en",
            source=SOURCE,
            task=task,
            split="train",
            provenance={"dataset": f"LLaVA-Med {kind}", "id": item["id"]},
        )
