"""Shared helpers for source builders: VQA/MCQ record shapes, image checks, build reports."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...conversation import IMAGE_PLACEHOLDER
from ...errors import RecordError
from ...fileio import read_json
from ..schema import Record, Turn


@dataclass
class BuildReport:
    """What a builder did: records written, and the items it skipped and why."""

    source: str
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)  # record ids (never more than 1000 kept)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "written": self.written,
            "skipped": dict(self.skipped),
            "missing_images": len(self.missing_images) if len(self.missing_images) < 1000 else ">=1000",
            "missing_image_ids_sample": self.missing_images[:20],
        }


def load_json(path: Path) -> Any:
    """A JSON file's content; `RecordError` naming the file when missing or malformed."""
    return read_json(path, RecordError)


def require(obj: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    """``RecordError`` naming every missing key."""
    missing = [k for k in keys if k not in obj]
    if missing:
        raise RecordError(f"{where}: missing field(s) {missing}")


def vqa_record(
    rid: str,
    image: str,
    question: str,
    answer: str,
    *,
    source: str,
    modality: str = "",
    split: str = "train",
    provenance: Mapping[str, Any] | None = None,
    task: str = "vqa",
) -> Record:
    """A single-turn image question/answer, ``<image>`` first as LLaVA does."""
    return Record(
        id=rid,
        conversations=(
            Turn("human", f"{IMAGE_PLACEHOLDER}\n{question.strip()}"),
            Turn("gpt", answer.strip()),
        ),
        images=(image,),
        language="en",
        source=source,
        task=task,
        modality=modality,
        split=split,
        provenance=dict(provenance or {}),
    )


def mcq_prompt(question: str, options: Mapping[str, str], context: str = "") -> str:
    """A multiple-choice question with lettered options (and an optional context block)."""
    lines = [f"Context: {context.strip()}", ""] if context else []
    lines.append(f"Question: {question.strip()}")
    lines.append("Options:")
    lines.extend(f"{letter}. {str(text).strip()}" for letter, text in options.items())
    lines.append("Answer with the correct option and explain why.")
    return "\n".join(lines)


def mcq_answer(letter: str, text: str, explanation: str = "") -> str:
    """The assistant's answer to an MCQ: the option, then the explanation when there is one."""
    answer = f"The correct answer is {letter}. {str(text).strip()}"
    explanation = (explanation or "").strip()
    return f"{answer}\n\nExplanation: {explanation}" if explanation else answer


LETTERS = string.ascii_uppercase


def check_image(root: Path, relative: str, rid: str, report: BuildReport) -> bool:
    """Whether the image exists under ``root``; a missing one is recorded (never raised)."""
    if (root / relative).is_file():
        return True
    report.skip("missing image")
    if len(report.missing_images) < 1000:
        report.missing_images.append(rid)
    return False


def split_name(raw: str) -> str:
    """Map dataset split names (dev, val, validate, ...) onto train/validation/test."""
    raw = raw.lower()
    if raw.startswith("train"):
        return "train"
    if raw in ("dev", "val", "valid", "validate", "validation"):
        return "validation"
    if raw.startswith("test"):
        return "test"
    raise RecordError(f"unknown split name {raw!r} (expected train, dev/val/validate, or test)")
