"""The BiMed-V record: a LLaVA-style conversation plus the metadata the pipeline needs.

This module is the one parser of the LLaVA / BiMed-V record format; the data pipeline,
`bimedix2 data validate` and training all read records through `record_from_json`. On disk
(JSONL, one object a line; or a LLaVA JSON array) a record is LLaVA-compatible::

    {"id": "vqa-rad-0001", "image": "synpic123.jpg" | ["a.png", "b.png"] (absent: text only),
     "conversations": [{"from": "human", "value": "<image>\\nWhat ..."}, {"from": "gpt", "value": "..."}],
     "language": "en" | "ar", "source": "vqa-rad", "task": "vqa", "modality": "CT",
     "split": "train" | "validation" | "test", "provenance": {...}}

Speakers are "human" and "gpt", with an optional leading "system" turn; "user" and
"assistant" (any case) are read as aliases of "human" and "gpt", as LLaVA-family data uses
both. Every problem raises `RecordError` naming the file:line and the record id.

Text is stored exactly as given: nothing here normalises, strips or re-encodes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..conversation import IMAGE_PLACEHOLDER, detect_language
from ..errors import RecordError
from ..types import Language

Speaker = Literal["system", "human", "gpt"]
# every accepted spelling of a turn's "from" (lower-cased) -> the LLaVA name it is stored under
SPEAKERS: dict[str, Speaker] = {
    "human": "human",
    "user": "human",
    "gpt": "gpt",
    "assistant": "gpt",
    "system": "system",
}
LANGUAGES: tuple[str, ...] = ("en", "ar")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
TASKS: tuple[str, ...] = ("vqa", "caption", "conversation", "mcq", "report", "summary", "chat")
MODALITIES: tuple[str, ...] = (
    "",
    "CXR",
    "CT",
    "MRI",
    "X-ray",
    "ultrasound",
    "histology",
    "gross",
    "microscopy",
    "fundus",
    "dermoscopy",
    "mixed",
    "other",
)
NO_TURNS = "no conversation turns"
_TEXT_FIELDS = ("language", "source", "task", "modality", "split")


@dataclass(frozen=True)
class Turn:
    """One conversation turn, LLaVA naming: ``speaker`` is "human", "gpt" or (first only) "system"."""

    speaker: Speaker
    value: str


@dataclass(frozen=True)
class Record:
    """One BiMed-V sample. ``provenance`` holds JSON values (where it came from, scores, reviews)."""

    id: str
    conversations: tuple[Turn, ...]
    images: tuple[str, ...] = ()
    language: Language = "en"
    source: str = ""
    task: str = "conversation"
    modality: str = ""
    split: str = "train"
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Record:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def record_to_json(record: Record) -> dict[str, Any]:
    """The record as a LLaVA-compatible JSON object (``image`` a string for one image, list for more)."""
    out: dict[str, Any] = {"id": record.id}
    if len(record.images) == 1:
        out["image"] = record.images[0]
    elif record.images:
        out["image"] = list(record.images)
    out["conversations"] = [{"from": t.speaker, "value": t.value} for t in record.conversations]
    out.update(
        language=record.language,
        source=record.source,
        task=record.task,
        modality=record.modality,
        split=record.split,
        provenance=dict(record.provenance),
    )
    return out


def record_label(where: str, rid: str) -> str:
    """The prefix of a message about one record: "file:line: record ID: " (either part may be absent)."""
    parts = [p for p in (where, f"record {rid}" if rid else "") if p]
    return "".join(f"{p}: " for p in parts)


def loose_id(obj: Any) -> str:
    """A raw object's id as text, or "" when it has none usable (for messages about a bad record)."""
    rid = obj.get("id") if isinstance(obj, dict) else None
    return str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else ""


def record_from_json(obj: Any, where: str = "") -> Record:
    """Parse one JSON object; `RecordError` naming ``where`` and the id, listing every structural problem.

    Missing metadata takes defaults, so plain LLaVA records load (language detected from text).
    """
    record, problems = parse_json(obj)
    if record is None:
        raise RecordError(record_label(where, loose_id(obj)) + "; ".join(problems))
    return record


def parse_json(obj: Any) -> tuple[Record | None, list[str]]:
    """The record a JSON object holds, or None and every structural problem found."""
    if not isinstance(obj, dict):
        return None, [f"expected a JSON object, got {type(obj).__name__}"]
    problems: list[str] = []
    rid = obj.get("id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or not str(rid).strip():
        problems.append("'id' must be a non-empty string")
    images = _images(obj.get("image"), problems)
    turns = _turns(obj.get("conversations"), problems)
    for key in _TEXT_FIELDS:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            problems.append(f"'{key}' must be a string")
    provenance = obj.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        problems.append("'provenance' must be an object")
    if problems:
        return None, problems
    language = obj.get("language") or detect_language(" ".join(t.value for t in turns))
    return Record(
        id=str(rid),
        conversations=tuple(turns),
        images=images,
        language=language,
        source=obj.get("source") or "",
        task=obj.get("task") or "conversation",
        modality=obj.get("modality") or "",
        split=obj.get("split") or "train",
        provenance=provenance or {},
    ), []


def _images(image: Any, problems: list[str]) -> tuple[str, ...]:
    if image is None:
        return ()
    if isinstance(image, str):
        return (image,)
    if isinstance(image, (list, tuple)) and all(isinstance(i, str) for i in image):
        return tuple(image)
    problems.append("'image' must be a path string or a list of path strings")
    return ()


def _turns(convs: Any, problems: list[str]) -> list[Turn]:
    if not isinstance(convs, list):
        problems.append("'conversations' must be a list of {from, value} objects")
        return []
    turns: list[Turn] = []
    for i, turn in enumerate(convs):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            problems.append(f"conversations[{i}] must be an object with a string 'value'")
            continue
        name = turn.get("from")
        speaker = SPEAKERS.get(name.lower()) if isinstance(name, str) else None
        if speaker is None:
            problems.append(
                f"conversations[{i}] has unknown 'from' {name!r} (human, gpt, or a first system turn; "
                "user and assistant are read as human and gpt)"
            )
        elif speaker == "system" and i > 0:
            problems.append(f"conversations[{i}] is a system turn; only the first turn may be one")
        else:
            turns.append(Turn(speaker, turn["value"]))
    return turns


def consistency_problems(record: Record) -> list[str]:
    """Problems that make a record unusable for training: no turns, images that do not match placeholders.

    Each ``<image>`` placeholder in a human turn marks one of the record's images, in order.
    """
    problems = [] if record.conversations else [NO_TURNS]
    problems += [p for i, turn in enumerate(record.conversations) if (p := _misplaced_image(i, turn))]
    if count := _image_count_problem(record):
        problems.append(count)
    return problems


def _misplaced_image(i: int, turn: Turn) -> str:
    if turn.speaker != "human" and IMAGE_PLACEHOLDER in turn.value:
        return f"conversations[{i}] ({turn.speaker}) contains {IMAGE_PLACEHOLDER}; only human turns may"
    return ""


def _image_count_problem(record: Record) -> str:
    placeholders = sum(t.value.count(IMAGE_PLACEHOLDER) for t in record.conversations if t.speaker == "human")
    if placeholders == len(record.images):
        return ""
    return f"{len(record.images)} image(s) but {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) in the human turns"


def validate_record(record: Record) -> list[str]:
    """Every problem of a parsed record, for the data pipeline (empty list when it is valid).

    Includes `consistency_problems`, worded the same, so training and ``data validate`` agree.
    """
    problems: list[str] = []
    if not record.id.strip():
        problems.append("empty id")
    if not record.conversations:
        problems.append(NO_TURNS)
    lead = 1 if record.conversations and record.conversations[0].speaker == "system" else 0
    for i, turn in enumerate(record.conversations):
        expected = "human" if (i - lead) % 2 == 0 else "gpt"
        if i >= lead and turn.speaker != expected:
            problems.append(f"turn {i} is from {turn.speaker!r}, expected {expected!r} (turns must alternate)")
        if not turn.value.strip():
            problems.append(f"turn {i} is empty")
        if misplaced := _misplaced_image(i, turn):
            problems.append(misplaced)
    if record.conversations and record.conversations[-1].speaker != "gpt":
        problems.append("last turn must be from 'gpt'")
    if count := _image_count_problem(record):
        problems.append(count)
    return problems + _metadata_problems(record) + _unencodable(record)


def _not_utf8(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unencodable(record: Record) -> list[str]:
    """Text no UTF-8 file can hold: lone surrogates, from ``\\udXXX`` escapes in the JSON (never repaired)."""
    rest = record_to_json(record)
    if not _not_utf8(rest):
        return []
    where = [f"turn {i}" for i, t in enumerate(record.conversations) if _not_utf8(t.value)]
    rest.pop("conversations")
    where += [f"'{key}'" for key, value in rest.items() if _not_utf8(value)]
    return [f"not valid UTF-8 text: a lone surrogate (\\ud800-\\udfff escape) in {', '.join(where)}"]


def _metadata_problems(record: Record) -> list[str]:
    problems: list[str] = []
    if record.language not in LANGUAGES:
        problems.append(f"language {record.language!r} is not one of {LANGUAGES}")
    elif record.conversations:
        text = " ".join(t.value for t in record.conversations)
        if record.language == "ar" and detect_language(text) != "ar":
            problems.append("language is 'ar' but the text is not Arabic")
    if record.split not in SPLITS:
        problems.append(f"split {record.split!r} is not one of {SPLITS}")
    if record.task not in TASKS:
        problems.append(f"task {record.task!r} is not one of {TASKS}")
    if record.modality not in MODALITIES:
        problems.append(f"modality {record.modality!r} is not one of {MODALITIES[1:]} (or empty)")
    for image in record.images:
        if not image or image.startswith("/") or ".." in image.split("/"):
            problems.append(f"image path {image!r} must be relative to the image root, without '..'")
    return problems
