"""Shared parts of the dataset readers: the sample type, the reader registry, file helpers.

Every reader takes the path the user gave, checks what it needs is there, and raises
`EvalDataError` naming the exact file or folder to provide. Nothing is downloaded. A reader's
options (a task YAML's `dataset: options:`) are a frozen dataclass, so an unknown or mistyped
option is an error naming it and the allowed ones.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from ...config import from_dict
from ...errors import ConfigError, EvalDataError
from ...fileio import iter_jsonl
from ...types import ImageRef
from ..spec import NoOptions


@dataclass(frozen=True)
class EvalSample:
    """One benchmark item: question/prompt text, images, reference answer and metadata."""

    id: str
    text: str
    reference: str
    images: tuple[ImageRef, ...] = ()
    language: str = "en"
    meta: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Path, Any], list[EvalSample]]


@dataclass(frozen=True)
class DatasetFormat:
    """A registered on-disk format: its reader and the dataclass of its options."""

    read: Reader
    options: type


READERS: dict[str, DatasetFormat] = {}


def reader(name: str, options: type = NoOptions) -> Callable[[Reader], Reader]:
    """Register `fn(path, options)` as the reader of format `name` (options: a frozen dataclass)."""

    def register(fn: Reader) -> Reader:
        READERS[name] = DatasetFormat(fn, options)
        return fn

    return register


def dataset_options(fmt: str, options: Mapping[str, Any] | Any, where: str) -> Any:
    """Format `fmt`'s typed options from a mapping (ConfigError naming a bad or unknown key)."""
    if fmt not in READERS:
        raise ConfigError(f"{where}: unknown dataset format {fmt!r} (known: {', '.join(sorted(READERS))})")
    schema = READERS[fmt].options
    if is_dataclass(options) and isinstance(options, schema):
        return options
    try:
        return from_dict(schema, options or {}, prefix="dataset.options")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_dataset(fmt: str, path: Path | None, options: Mapping[str, Any] | Any, task: str) -> list[EvalSample]:
    """Read a dataset in format `fmt` from `path`."""
    if path is None:
        raise EvalDataError(f"task {task!r} needs its data: pass --data {task}=PATH")
    path = Path(path).expanduser()
    if not path.exists():
        raise EvalDataError(f"task {task!r}: data path {path} does not exist; provide the dataset there")
    if fmt not in READERS:
        raise EvalDataError(f"task {task!r}: unknown dataset format {fmt!r} (known: {', '.join(sorted(READERS))})")
    samples = READERS[fmt].read(path, dataset_options(fmt, options, f"task {task!r}"))
    if not samples:
        raise EvalDataError(f"task {task!r}: no test samples found in {path} (format {fmt})")
    return samples


def need(path: Path, what: str) -> Path:
    """`path`, or EvalDataError naming what is missing there."""
    if not path.exists():
        raise EvalDataError(f"missing {what}: {path}")
    return path


def load_json(path: Path) -> Any:
    """A JSON file; EvalDataError naming it when malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path}: not valid JSON ({exc})") from exc


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-empty line; a bad line raises naming file and line."""
    yield from iter_jsonl(need(path, "JSONL file"), EvalDataError)


def get_field(record: dict[str, Any], key: str, where: str) -> Any:
    """`record[key]`, or EvalDataError naming the record and the field."""
    if key not in record:
        raise EvalDataError(f"{where}: missing field {key!r}")
    return record[key]


def open_text(path: Path) -> io.TextIOBase:
    """A text file, gunzipped when it ends in .gz."""
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")
