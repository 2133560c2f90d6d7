"""Training records: LLaVA / BiMed-V records (parsed by `data.schema`) as `Message` conversations.

Records are read and checked by the one record parser, `data.schema.record_from_json`, so
training and ``bimedix2 data validate`` accept the same records and word the same problems
the same way. Each `<image>` placeholder in a human turn marks one of the record's images, in
order; the images are attached to that turn (the template puts them at the start of the turn,
as LLaVA does). Files are JSONL (one record per line), a LLaVA JSON array, or Parquet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..conversation import IMAGE_PLACEHOLDER
from ..data.io import iter_record_objects
from ..data.schema import Record, consistency_problems, record_from_json, record_label
from ..errors import RecordError
from ..types import ImageRef, Message, Role

ROLES: dict[str, Role] = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass(frozen=True)
class TrainRecord:
    """One training conversation; images live on the user turns that mention them."""

    id: str
    messages: tuple[Message, ...]

    @property
    def n_images(self) -> int:
        return sum(len(m.images) for m in self.messages)


def to_train_record(record: Record, *, image_root: Path, where: str = "") -> TrainRecord:
    """The `TrainRecord` of a parsed record; `RecordError` naming ``where`` and the id when it cannot train."""
    problems = consistency_problems(record)
    if problems:
        raise RecordError(record_label(where, record.id) + "; ".join(problems))
    refs = [ImageRef(p if p.is_absolute() else image_root / p) for p in map(Path, record.images)]
    messages: list[Message] = []
    used = 0
    for turn in record.conversations:
        count = turn.value.count(IMAGE_PLACEHOLDER)
        text = turn.value
        if count:
            text = text.replace(IMAGE_PLACEHOLDER + "\n", "").replace(IMAGE_PLACEHOLDER, "").strip()
        messages.append(Message(ROLES[turn.speaker], text, tuple(refs[used : used + count])))
        used += count
    return TrainRecord(record.id, tuple(messages))


def parse_record(raw: object, *, image_root: Path, where: str = "") -> TrainRecord:
    """A `TrainRecord` from one raw LLaVA record; `RecordError` naming ``where`` and the id on any problem."""
    return to_train_record(record_from_json(raw, where), image_root=image_root, where=where)


def read_records(
    paths: Sequence[str | Path], *, image_root: str | Path | None = None, limit: int | None = None
) -> list[TrainRecord]:
    """All records of the given files, in order; duplicate ids raise."""
    records: list[TrainRecord] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise RecordError(f"{path}: training data file not found")
        root = Path(image_root) if image_root else path.parent
        for raw, where in iter_record_objects(path):
            record = parse_record(raw, image_root=root, where=where)
            if record.id in seen:
                raise RecordError(f"{record_label(where, record.id)}duplicate id (first at {seen[record.id]})")
            seen[record.id] = where
            records.append(record)
            if limit is not None and len(records) >= limit:
                return records
    return records
