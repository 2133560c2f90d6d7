"""LLaVA-Med: ``llava_med_instruct_60k_inline_mention.json`` (60K-IM conversations) and
``llava_med_alignment_500k.json`` (caption alignment), images under ``images/``.

Both are JSON arrays of LLaVA records ``{"id", "image", "conversations": [{"from", "value"}]}``.

``to-qa`` is BiMed-V's "LLaVA-Med-to-QA" (163,463 records in BiMediX2's Table 12): the paper says only
that 163k VQA samples were curated "by repurposing the LLaVA-Med 60K-IM dataset". Our reading: every
question-answer exchange of a 60K-IM conversation becomes one single-turn VQA record on that image (the
question gets ``<image>``). Later questions of a conversation can lean on earlier turns ("Is it on the
left?"); they are kept as released, with their turn number in ``provenance.turn``. The 163,463 count on
the released file is not checked here (no data); `bimedix2 data build` prints the count it made.
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
    "to-qa": ("llava_med_instruct_60k_inline_mention.json", "vqa"),
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
        if kind == "to-qa":
            yield from _single_turn_qa(item, turns, image, where)
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


def _single_turn_qa(item: dict, turns: list[Turn], image: str, where: str) -> Iterator[Record]:
    """One single-turn VQA record per (human, gpt) exchange of a 60K-IM conversation."""
    if len(turns) % 2 or any(t.speaker != ("human" if k % 2 == 0 else "gpt") for k, t in enumerate(turns)):
        raise RecordError(f"{where}: expected alternating human/gpt turns, starting with human")
    for n in range(len(turns) // 2):
        question = turns[2 * n].value.replace(IMAGE_PLACEHOLDER, "").strip()
        answer = turns[2 * n + 1].value.strip()
        if not question or not answer:
            raise RecordError(f"{where}: exchange {n + 1} has an empty question or answer")
        yield Record(
            id=f"{SOURCE}-to-qa-{item['id']}-{n + 1}",
            conversations=(Turn("human", f"{IMAGE_PLACEHOLDER}\n{question}"), Turn("gpt", answer)),
            images=(image,),
            language="en",
            source=SOURCE,
            task="vqa",
            split="train",
            provenance={"dataset": "LLaVA-Med 60K-IM (to QA)", "id": item["id"], "turn": n + 1},
        )
