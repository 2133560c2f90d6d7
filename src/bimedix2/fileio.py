"""The one file layer every layer shares: atomic writes (file, text, JSON, JSONL, directory) and JSON/JSONL reading.

Every writer goes to a temporary name beside the target, fsyncs, and renames only when the
whole write succeeded, so an interrupted run, a full disk or a crash never leaves a
half-written output. Readers name the file and line of whatever is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh directory beside `target`; it becomes `target` only if the block succeeds.

    An interrupted or failed write never leaves a half-written `target`. Renaming onto an
    existing non-empty `target` raises OSError (the caller decides whether that is fine).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` ("w" text as UTF-8, or "wb"); rename it onto `path` if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_writer(path) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write `obj` as JSON (UTF-8 kept as is, not \\u-escaped) to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write one JSON value per line to `path` atomically; returns how many lines were written."""
    count = 0
    with atomic_writer(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            count += 1
    return count


class JsonlLine(NamedTuple):
    """One non-blank JSONL line: its object, or why it is not one; `end` is the byte offset after it."""

    number: int
    obj: dict[str, Any] | None
    problem: str | None
    end: int


def scan_jsonl(path: Path) -> Iterator[JsonlLine]:
    """Every non-blank line of a JSONL file, bad ones included (with the problem), never raising for a line.

    For readers that report bad lines and go on (validation, resumable jobs); `iter_jsonl` is the
    strict form. Invalid UTF-8 is reported with its line, never replaced silently.
    """
    with Path(path).open("rb") as handle:
        end = 0
        for number, raw in enumerate(handle, 1):
            end += len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                offset = end - len(raw) + exc.start
                yield JsonlLine(
                    number, None, f"not valid UTF-8 (byte {exc.start} of the line, offset {offset} in the file)", end
                )
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield JsonlLine(number, None, f"not valid JSON ({exc.msg})", end)
                continue
            if not isinstance(obj, dict):
                yield JsonlLine(number, None, "expected a JSON object", end)
                continue
            yield JsonlLine(number, obj, None, end)


def iter_jsonl(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line; `error` names the file and line of a bad one.

    Streams the file, so memory stays flat however long it is. Invalid UTF-8 is reported with
    its line, never replaced silently.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    for line in scan_jsonl(path):
        if line.obj is None:
            raise error(f"{path}:{line.number}: {line.problem}")
        yield line.number, line.obj


def read_json(path: Path, error: type[Exception]) -> Any:
    """A whole JSON file's value; `error` names the file (and line) when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
