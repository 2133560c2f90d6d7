"""PMC-OA image-caption pairs (Lin et al. 2023; the Hub release's layout): JSON Lines
``pmc_oa.jsonl`` (or split files ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``), one
``{"image": "PMC212319_Fig3_4.jpg", "caption": "..."}`` a line, subfigure images under
``images/`` or ``caption_T060_filtered_top4_sep_v0_subfigures/`` (the folder the release's zip unpacks to).

Records are in the LLaVA pretrain (stage 1) layout that ``configs/train/stage1-*.yaml`` reads:
``id``, ``image``, ``conversations`` = [human ``"<image>\\n"`` + a brief-caption instruction,
gpt caption], task ``caption``. The instruction is picked from `INSTRUCTIONS` by a hash of the
image name, so a rebuild gives the same records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from ...errors import RecordError
from ...fileio import iter_jsonl
from ..schema import Record
from .common import BuildReport, check_image, require, split_name, vqa_record

SOURCE = "pmc-oa"
ALL_FILE = "pmc_oa.jsonl"
SPLIT_FILES = ("train.jsonl", "valid.jsonl", "test.jsonl")
IMAGE_DIRS = ("images", "caption_T060_filtered_top4_sep_v0_subfigures")
INSTRUCTIONS = (
    "Describe the image concisely.",
    "Give a brief caption for this figure.",
    "Summarize what the image shows in a sentence.",
    "Write a short caption for the medical image.",
    "What does this figure show? Answer briefly.",
    "Provide a concise description of the image.",
)


def instruction_for(image: str) -> str:
    """The caption instruction for one image (deterministic)."""
    digest = hashlib.blake2b(image.encode("utf-8"), digest_size=8).digest()
    return INSTRUCTIONS[int.from_bytes(digest, "big") % len(INSTRUCTIONS)]


def _files(root: Path) -> list[tuple[str, Path]]:
    if (root / ALL_FILE).is_file():
        return [("train", root / ALL_FILE)]
    found = [(split_name(name.removesuffix(".jsonl")), root / name) for name in SPLIT_FILES if (root / name).is_file()]
    if not found:
        raise RecordError(f"{root}: neither {ALL_FILE} nor any of {list(SPLIT_FILES)} found (is this PMC-OA?)")
    return found


def _image_dir(root: Path) -> str:
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return name
    return IMAGE_DIRS[0]  # every image is then counted missing


def build(root: Path, report: BuildReport) -> Iterator[Record]:
    image_dir = _image_dir(root)
    for split, path in _files(root):
        for line_no, item in iter_jsonl(path, RecordError):
            where = f"{path}:{line_no}"
            if not isinstance(item, dict):
                raise RecordError(f"{where}: expected an object with image and caption")
            require(item, ("image", "caption"), where)
            name, caption = item["image"], item["caption"]
            if not isinstance(name, str) or not name.strip() or name.startswith("/") or ".." in Path(name).parts:
                raise RecordError(f"{where}: image must be a relative file name, got {name!r}")
            if not isinstance(caption, str):
                raise RecordError(f"{where}: caption must be a string, got {type(caption).__name__}")
            if not caption.strip():
                report.skip("empty caption")
                continue
            rid = f"{SOURCE}-{split}-{line_no}"
            image = f"{image_dir}/{name.strip()}"
            if not check_image(root, image, rid, report):
                continue
            yield vqa_record(
                rid,
                image,
                instruction_for(name.strip()),
                caption,
                source=SOURCE,
                task="caption",
                split=split,
                provenance={"dataset": "PMC-OA", "image": name, "line": line_no},
            )
