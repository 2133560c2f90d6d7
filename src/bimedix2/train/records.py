"""Reading LLaVA / BiMed-V training records into `Message` conversations.

A record is ``{"id": ..., "image": "a.png" | ["a.png", "b.png"] (optional),
"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}``. Each `<image>`
placeholder in a human turn marks one of the record's images, in order; the images are
attached to that turn (the template puts them at the start of the turn, as LLaVA does).
Files are JSON (a list of records) or JSONL (one record per line).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conversation import IMAGE_PLACEHOLDER
from ..errors import RecordError
from ..fileio import iter_jsonl
from ..types import ImageRef, Message

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass(frozen=True)
class TrainRecord:
    """One training conversation; images live on the user turns that mention them."""

    id: str
    messages: tuple[Message, ...]

    @property
    def n_images(self) -> int:
        return sum(len(m.images) for m in self.messages)


def parse_record(raw: Any, *, image_root: Path, where: str = "") -> TrainRecord:
    """A `TrainRecord` from one raw LLaVA record; `RecordError` naming the record on any problem."""
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(raw).__name__}")
    rid = raw.get("id")
    if rid is None or (isinstance(rid, str) and not rid.strip()):
        raise RecordError(f"{where}: record has no 'id'")
    label = f"record {rid!s}" + (f" ({where})" if where else "")
    images = raw.get("image")
    if images is None:
        paths: list[str] = []
    elif isinstance(images, str):
        paths = [images]
    elif isinstance(images, list) and all(isinstance(p, str) for p in images):
        paths = list(images)
    else:
        raise RecordError(f"{label}: 'image' must be a path or a list of paths")
    turns = raw.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordError(f"{label}: 'conversations' must be a non-empty list")
    refs = [ImageRef(p if Path(p).is_absolute() else image_root / p) for p in map(Path, paths)]
    messages: list[Message] = []
    used = 0
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RecordError(f"{label}: conversations[{i}] must have a string 'value'")
        role = ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise RecordError(
                f"{label}: conversations[{i}] has unknown 'from' {turn.get('from')!r} (human, gpt, system)"
            )
        value: str = turn["value"]
        count = value.count(IMAGE_PLACEHOLDER)
        if count and role != "user":
            raise RecordError(f"{label}: conversations[{i}] ({turn['from']}) contains {IMAGE_PLACEHOLDER}")
        text = value.replace(IMAGE_PLACEHOLDER + "\n", "").replace(IMAGE_PLACEHOLDER, "").strip() if count else value
        if used + count > len(refs):
            raise RecordError(f"{label}: {IMAGE_PLACEHOLDER} placeholders outnumber the record's {len(refs)} image(s)")
        messages.append(Message(role, text, tuple(refs[used : used + count])))  # type: ignore[arg-type]
        used += count
    if used != len(refs):
        raise RecordError(
            f"{label}: {len(refs)} image(s) but {used} {IMAGE_PLACEHOLDER} placeholder(s) in the human turns"
        )
    return TrainRecord(str(rid), tuple(messages))


def iter_raw_records(path: Path) -> Iterator[tuple[Any, str]]:
    """(raw record, "file:line" or "file[index]") pairs of a JSON or JSONL file."""
    if not path.is_file():
        raise RecordError(f"{path}: training data file not found")
    if path.suffix == ".jsonl":
        for lineno, obj in iter_jsonl(path, RecordError):
            yield obj, f"{path}:{lineno}"
        return
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise RecordError(f"{path}: a .json training file must hold a list of records (use .jsonl for one per line)")
    for index, raw in enumerate(data):
        yield raw, f"{path}[{index}]"


def read_records(
    paths: Sequence[str | Path], *, image_root: str | Path | None = None, limit: int | None = None
) -> list[TrainRecord]:
    """All records of the given files, in order; duplicate ids raise."""
    records: list[TrainRecord] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        root = Path(image_root) if image_root else path.parent
        for raw, where in iter_raw_records(path):
            record = parse_record(raw, image_root=root, where=where)
            if record.id in seen:
                raise RecordError(f"record {record.id} ({where}): duplicate id (first at {seen[record.id]})")
            seen[record.id] = where
            records.append(record)
            if limit is not None and len(records) >= limit:
                return records
    return records
