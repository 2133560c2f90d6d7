"""The BiMed-V record: a LLaVA-style conversation plus the metadata the pipeline needs.

On disk (JSONL, one object a line) a record is LLaVA-compatible, so LLaVA/BiMediX2 training
code reads it unchanged::

    {"id": "vqa-rad-0001", "image": "synpic123.jpg" | ["a.png", "b.png"] (absent: text only),
     "conversations": [{"from": "human", "value": "<image>\\nWhat ..."}, {"from": "gpt", "value": "..."}],
     "language": "en" | "ar", "source": "vqa-rad", "task": "vqa", "modality": "CT",
     "split": "train" | "validation" | "test", "provenance": {...}}

Text is stored exactly as given: nothing here normalises, strips or re-encodes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..conversation import IMAGE_PLACEHOLDER, detect_language
from ..errors import DataError
from ..types import Language

Speaker = Literal["human", "gpt"]
SPEAKERS: tuple[str, ...] = ("human", "gpt")
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
KNOWN_FIELDS = frozenset(
    {"id", "image", "conversations", "language", "source", "task", "modality", "split", "provenance"}
)


@dataclass(frozen=True)
class Turn:
    """One conversation turn, LLaVA naming: ``speaker`` is "human" or "gpt"."""

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

    @property
    def human_turns(self) -> tuple[str, ...]:
        return tuple(t.value for t in self.conversations if t.speaker == "human")


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


def record_from_json(obj: Any, where: str = "") -> Record:
    """Parse one JSON object; ``DataError`` listing every structural problem (not just the first).

    Missing metadata takes defaults, so plain LLaVA records load (language detected from text).
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(obj, dict):
        raise DataError(f"{prefix}expected a JSON object, got {type(obj).__name__}")
    rid = obj.get("id")
    label = f"{prefix}record {rid!r}: " if rid is not None else prefix
    problems: list[str] = []
    if not isinstance(rid, (str, int)) or rid == "":
        problems.append("'id' must be a non-empty string")
    image = obj.get("image", ())
    if isinstance(image, str):
        images: tuple[str, ...] = (image,)
    elif isinstance(image, (list, tuple)) and all(isinstance(i, str) for i in image):
        images = tuple(image)
    elif image is None:
        images = ()
    else:
        problems.append("'image' must be a path string or a list of path strings")
        images = ()
    turns: list[Turn] = []
    convs = obj.get("conversations")
    if not isinstance(convs, list):
        problems.append("'conversations' must be a list of {from, value} objects")
    else:
        for i, turn in enumerate(convs):
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                problems.append(f"conversations[{i}] must be an object with a string 'value'")
            elif turn.get("from") not in SPEAKERS:
                problems.append(f"conversations[{i}].from must be 'human' or 'gpt', got {turn.get('from')!r}")
            else:
                turns.append(Turn(turn["from"], turn["value"]))
    for key in ("language", "source", "task", "modality", "split"):
        if key in obj and not isinstance(obj[key], str):
            problems.append(f"'{key}' must be a string")
    provenance = obj.get("provenance", {})
    if not isinstance(provenance, dict):
        problems.append("'provenance' must be an object")
    if problems:
        raise DataError(label + "; ".join(problems))
    language = obj.get("language") or detect_language(" ".join(t.value for t in turns))
    return Record(
        id=str(rid),
        conversations=tuple(turns),
        images=images,
        language=language,  # type: ignore[arg-type]  # checked by validate_record
        source=obj.get("source", ""),
        task=obj.get("task", "conversation"),
        modality=obj.get("modality", ""),
        split=obj.get("split", "train"),
        provenance=provenance,
    )


def validate_record(record: Record) -> list[str]:
    """Every semantic problem of a record (empty list when it is valid)."""
    problems: list[str] = []
    if not record.id.strip():
        problems.append("empty id")
    if not record.conversations:
        problems.append("no conversation turns")
    for i, turn in enumerate(record.conversations):
        expected = "human" if i % 2 == 0 else "gpt"
        if turn.speaker != expected:
            problems.append(f"turn {i} is from {turn.speaker!r}, expected {expected!r} (turns must alternate)")
        if not turn.value.strip():
            problems.append(f"turn {i} is empty")
        if turn.speaker == "gpt" and IMAGE_PLACEHOLDER in turn.value:
            problems.append(f"turn {i}: {IMAGE_PLACEHOLDER} in an assistant turn")
    if record.conversations and record.conversations[-1].speaker != "gpt":
        problems.append("last turn must be from 'gpt'")
    placeholders = sum(t.value.count(IMAGE_PLACEHOLDER) for t in record.conversations if t.speaker == "human")
    if placeholders != len(record.images):
        problems.append(f"{placeholders} {IMAGE_PLACEHOLDER} placeholder(s) but {len(record.images)} image(s)")
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
