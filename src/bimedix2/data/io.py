"""Streaming record I/O: JSONL (the pipeline's format), LLaVA JSON arrays, Parquet and HF datasets.

Readers are generators (memory stays flat over 1.6M records) and parse every record with
`schema.record_from_json`; writers go through `fileio.atomic_writer`, so a crash never leaves
a half-written output. Text is written as UTF-8 with ``ensure_ascii=False`` and is never normalised.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import RecordError
from ..fileio import atomic_write_jsonl, atomic_writer, iter_jsonl, read_json, scan_jsonl
from .schema import Record, loose_id, parse_json, record_from_json, record_to_json, validate_record


def iter_record_objects(path: str | Path) -> Iterator[tuple[Any, str]]:
    """(raw record, "file:line" or "file[index]") of a record file, in file order.

    ``.jsonl`` is one record a line (streamed), ``.json`` a LLaVA array (loaded whole),
    ``.parquet`` as written by `write_parquet`; any other name is read as an array when its
    first non-blank byte is ``[``, as JSONL otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    if path.suffix == ".parquet":
        yield from _parquet_objects(path)
    elif path.suffix == ".json" or (path.suffix != ".jsonl" and _starts_with_bracket(path)):
        data = read_json(path, RecordError)
        if not isinstance(data, list):
            raise RecordError(f"{path}: expected a JSON array of records (use .jsonl for one record per line)")
        for index, obj in enumerate(data):
            yield obj, f"{path}[{index}]"
    else:
        for line_no, obj in iter_jsonl(path, RecordError):
            yield obj, f"{path}:{line_no}"


def _starts_with_bracket(path: Path) -> bool:
    with path.open("rb") as handle:
        while chunk := handle.read(4096):
            if stripped := chunk.lstrip():
                return stripped.startswith(b"[")
    return False


def iter_records(path: str | Path) -> Iterator[Record]:
    """Records of a JSONL, LLaVA ``.json`` or Parquet file, in file order; `RecordError` names a bad one."""
    for obj, where in iter_record_objects(path):
        yield record_from_json(obj, where)


def dumps_record(record: Record) -> str:
    """One JSONL line (no newline), UTF-8 text kept as is."""
    return json.dumps(record_to_json(record), ensure_ascii=False)


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
    """Write records atomically as JSONL; returns how many were written."""
    return atomic_write_jsonl(path, (record_to_json(record) for record in records))


# ---- Parquet / Hugging Face datasets ------------------------------------------------------------


def _arrow_schema():  # noqa: ANN202 - pyarrow imported lazily
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("images", pa.list_(pa.string())),
            ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
            ("language", pa.string()),
            ("source", pa.string()),
            ("task", pa.string()),
            ("modality", pa.string()),
            ("split", pa.string()),
            ("provenance", pa.string()),  # JSON text: its keys differ between sources
        ]
    )


def _arrow_row(record: Record) -> dict[str, Any]:
    row = record_to_json(record)
    row.pop("image", None)
    row["images"] = list(record.images)
    row["provenance"] = json.dumps(dict(record.provenance), ensure_ascii=False, sort_keys=True)
    return row


def write_parquet(records: Iterable[Record], path: str | Path, batch_size: int = 10_000) -> int:
    """Write records to Parquet in batches (memory bounded), atomically; returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema()
    count = 0
    with atomic_writer(path, "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(_arrow_row(record))
            count += 1
            if len(batch) >= batch_size:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return count


def iter_parquet(path: str | Path, batch_size: int = 4096) -> Iterator[Record]:
    """Records of a Parquet file written by ``write_parquet``, streamed batch by batch."""
    for obj, where in _parquet_objects(Path(path), batch_size):
        yield record_from_json(obj, where)


def _parquet_objects(path: Path, batch_size: int = 4096) -> Iterator[tuple[dict[str, Any], str]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(str(path))
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: cannot read Parquet ({exc})") from exc
    index = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            obj = dict(row)
            obj["image"] = obj.pop("images") or None
            obj["provenance"] = json.loads(obj["provenance"] or "{}")
            yield obj, f"{path}[{index}]"
            index += 1


def load_hf_dataset(path: str | Path):  # noqa: ANN201 - datasets imported lazily
    """A Hugging Face ``datasets.Dataset`` (memory-mapped Arrow) over a JSONL or Parquet record file."""
    import datasets

    path = Path(path)
    if path.suffix != ".parquet":
        parquet = path.with_suffix(".parquet")
        write_parquet(iter_records(path), parquet)
        path = parquet
    return datasets.Dataset.from_parquet(str(path))


# ---- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One bad record: where it is and everything wrong with it."""

    line: int
    id: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"line {self.line} (id {self.id or '?'}): " + "; ".join(self.problems)


@dataclass
class ValidationReport:
    """Result of ``validate_file``: counts plus every issue found."""

    path: Path
    total: int = 0
    issues: list[Issue] = field(default_factory=list)
    missing_images: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def valid(self) -> int:
        """Records with no problem at all."""
        return self.total - len(self.issues)


def _id_digest(rid: str) -> int:
    return int.from_bytes(hashlib.blake2b(rid.encode("utf-8"), digest_size=8).digest(), "big")


def _duplicates(digests: array, lines: array) -> dict[int, int]:
    """line -> first line with the same id, for every repeated id (sorting 16 bytes per record)."""
    import numpy as np

    d = np.frombuffer(digests, dtype=np.uint64)
    ln = np.frombuffer(lines, dtype=np.uint64)
    if len(d) < 2:
        return {}
    order = np.argsort(d, kind="stable")  # stable: within one id, file order
    sd = d[order]
    repeat = np.concatenate([[False], sd[1:] == sd[:-1]])
    group_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(sd))))
    dup = np.flatnonzero(repeat)
    return {int(ln[order[i]]): int(ln[order[group_start[i]]]) for i in dup}


def validate_file(
    path: str | Path, image_root: str | Path | None = None, *, progress: bool = False
) -> ValidationReport:
    """Check every line of a JSONL record file, collecting all problems (never stops at the first).

    Checks UTF-8, JSON syntax, structure (the parser training uses, worded the same),
    semantics (``validate_record``), duplicate ids and, with ``image_root``, that each image
    file exists. Memory: 16 bytes per record (id hash and line) for duplicate detection,
    which runs after the pass.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    report = ValidationReport(path=path)
    digests, lines = array("Q"), array("Q")
    root = Path(image_root) if image_root is not None else None
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="validate", disable=not progress)
    with bar:
        for line in scan_jsonl(path):
            bar.update(line.end - bar.n)
            report.total += 1
            if line.obj is None:
                report.issues.append(Issue(line.number, "", (str(line.problem),)))
                continue
            rid = loose_id(line.obj)
            record, problems = parse_json(line.obj)
            if record is None:
                report.issues.append(Issue(line.number, rid, ("; ".join(problems),)))
                continue
            problems = validate_record(record)
            digests.append(_id_digest(record.id))
            lines.append(line.number)
            if root is not None:
                for image in record.images:
                    if not (root / image).is_file():
                        problems.append(f"image not found: {image}")
                        report.missing_images += 1
            if problems:
                report.issues.append(Issue(line.number, rid, tuple(problems)))
    _add_duplicates(report, _duplicates(digests, lines))
    return report


def _add_duplicates(report: ValidationReport, duplicates: dict[int, int]) -> None:
    """Add a "duplicate id" problem to every repeated record's issue (creating it when needed)."""
    if not duplicates:
        return
    by_line = {issue.line: issue for issue in report.issues}
    for line_no, first in duplicates.items():
        problem = f"duplicate id (first on line {first})"
        old = by_line.get(line_no)
        by_line[line_no] = Issue(line_no, old.id, (*old.problems, problem)) if old else Issue(line_no, "", (problem,))
    ids = _ids_at(report.path, {n for n, issue in by_line.items() if not issue.id and n in duplicates})
    report.issues = [Issue(i.line, i.id or ids.get(i.line, ""), i.problems) for _, i in sorted(by_line.items())]


def _ids_at(path: Path, wanted: set[int]) -> dict[int, str]:
    """Record ids on the given line numbers (a second pass, only when duplicates were found)."""
    if not wanted:
        return {}
    return {line.number: loose_id(line.obj) for line in scan_jsonl(path) if line.number in wanted}
