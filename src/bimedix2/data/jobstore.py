"""Durable per-record job state in SQLite (WAL), shared by translation and rewriting jobs.

One row per input record (``idx`` = its position in the input file, ``content_hash`` = a hash
of its content). A row is written, and committed, only when the record's work is finished, so a
job killed at any moment resumes by skipping finished rows whose content is unchanged; the LLM
response cache (``llm_client``) makes the unfinished records' completed calls free on the rerun.
Human review decisions live in the same rows.

Failures to save are `RecordError`s naming the folder (a full disk says so), and a state file
deleted or replaced under a running job is noticed at the next write (`check_file`), never
silently written into an unlinked file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RecordError

STATUSES = ("done", "review", "failed", "invalid", "skipped")
DECISIONS = ("accepted", "edited", "rejected")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    rec_id TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    info TEXT NOT NULL DEFAULT '{}',
    first_score INTEGER,
    final_score INTEGER,
    threshold INTEGER,
    rounds INTEGER NOT NULL DEFAULT 0,
    review_reason TEXT,
    decision TEXT,
    decided_output TEXT,
    decided_at REAL,
    finished_at REAL NOT NULL,
    content_hash TEXT
);
CREATE INDEX IF NOT EXISTS items_review ON items(review_reason, decision);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ItemResult:
    """The finished outcome of one input record."""

    rec_id: str
    status: str
    output: Mapping[str, Any] | None = None  # the output record as JSON (``record_to_json``)
    info: Mapping[str, Any] | None = None
    first_score: int | None = None
    final_score: int | None = None
    threshold: int | None = None
    rounds: int = 0
    review_reason: str | None = None


@dataclass(frozen=True)
class StoredItem:
    """A row as read back (``decision`` set once a reviewer acted)."""

    idx: int
    result: ItemResult
    decision: str | None
    decided_output: Mapping[str, Any] | None


def _connect(path: Path) -> sqlite3.Connection:
    """The SQLite connection of a job store (a seam: tests replace it to simulate a full disk)."""
    return sqlite3.connect(str(path), isolation_level=None, timeout=30)


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower() or getattr(exc, "errno", None) == 28


def save_error(what: str, where: Path, exc: BaseException) -> RecordError:
    """The error for a failed write of job data: a full disk says so; finished work is kept either way."""
    if _is_disk_full(exc):
        return RecordError(f"disk full while saving {what} in {where}: free space and rerun; finished records are kept")
    return RecordError(
        f"cannot save {what} in {where} ({type(exc).__name__}: {exc}); finished records are kept, rerun to continue"
    )


class JobStore:
    """SQLite-backed job state; every write is its own committed transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # a WAL without its database (deleted under a running job) would be replayed into a new one
            for orphan in _sidecars(self.path):
                orphan.unlink(missing_ok=True)
        try:
            self._db = _connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(items)")}
            if "content_hash" not in columns:  # a job started before content hashes
                self._db.execute("ALTER TABLE items ADD COLUMN content_hash TEXT")
        except sqlite3.Error as exc:
            raise save_error("job state", self.path.parent, exc) from None
        stat = self.path.stat()
        self._identity = (stat.st_dev, stat.st_ino)
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._db.close()
        if not self.path.exists():
            for orphan in _sidecars(self.path):
                orphan.unlink(missing_ok=True)

    def check_file(self) -> None:
        """Raise if the state file was deleted or replaced since this store opened it."""
        try:
            stat = self.path.stat()
            same = (stat.st_dev, stat.st_ino) == self._identity
        except FileNotFoundError:
            same = False
        if not same:
            self.close()
            raise RecordError(
                f"{self.path} was deleted or replaced while the job ran, so its state is gone; rerun to rebuild it "
                "(replies already paid for are still in the LLM response cache)"
            )

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """One committed write; a failure is a `RecordError` naming the folder, a vanished file is noticed."""
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise save_error("job state", self.path.parent, exc) from None
        self.check_file()
        return cursor

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- config fingerprint ---------------------------------------------------------------------
    def check_config(self, settings: Mapping[str, Any]) -> None:
        """Record the settings that shape results; refuse to resume under different ones."""
        blob = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            self._write("INSERT INTO meta VALUES ('settings', ?)", (blob,))
            return
        old = json.loads(row[0])
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != json.loads(blob).get(k))
        if changed:
            raise ConfigError(
                f"{self.path} belongs to a job started with different settings (changed: {changed}); "
                "use a new output folder, or restore the original settings to resume"
            )

    # ---- items ----------------------------------------------------------------------------------
    def finished_id(self, idx: int) -> str | None:
        """The record id stored for a finished idx, or None when it is not finished."""
        row = self._db.execute("SELECT rec_id FROM items WHERE idx = ?", (idx,)).fetchone()
        return None if row is None else str(row[0])

    def finished(self, idx: int) -> tuple[str, str | None] | None:
        """(record id, content hash) stored for a finished idx (hash None in jobs older than hashes)."""
        row = self._db.execute("SELECT rec_id, content_hash FROM items WHERE idx = ?", (idx,)).fetchone()
        return None if row is None else (str(row[0]), row[1])

    def finished_from(self, idx: int, limit: int) -> list[tuple[int, str, str | None]]:
        """Up to ``limit`` finished rows from ``idx`` on, in order: (idx, record id, content hash)."""
        rows = self._db.execute(
            "SELECT idx, rec_id, content_hash FROM items WHERE idx >= ? ORDER BY idx LIMIT ?", (idx, limit)
        )
        return [(int(i), str(rec_id), digest) for i, rec_id, digest in rows]

    def set_hash(self, idx: int, content_hash: str) -> None:
        """Record the content hash of a finished row stored before hashes existed."""
        self._write("UPDATE items SET content_hash = ? WHERE idx = ?", (content_hash, idx))

    def remove_after(self, last_idx: int, listed: int = 1000) -> tuple[list[str], int]:
        """Delete the rows past ``last_idx`` (records no longer in the input): (first ``listed`` ids, how many)."""
        where = "FROM items WHERE idx > ?"
        count = int(self._db.execute(f"SELECT COUNT(*) {where}", (last_idx,)).fetchone()[0])
        rows = self._db.execute(f"SELECT rec_id {where} ORDER BY idx LIMIT ?", (last_idx, listed))
        ids = [str(r[0]) for r in rows]
        if count:
            self._write(f"DELETE {where}", (last_idx,))
        return ids, count

    def invalid_lines(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The first ``limit`` invalid input lines: line number, id (when readable) and the reason."""
        rows = self._db.execute(
            "SELECT rec_id, info FROM items WHERE status = 'invalid' ORDER BY idx LIMIT ?", (limit,)
        )
        out = []
        for rec_id, info in rows:
            data = json.loads(info)
            out.append({"line": data.get("line"), "id": rec_id, "error": data.get("error", "")})
        return out

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM items WHERE status = ?", (status,)).fetchone()[0])

    def put(self, idx: int, result: ItemResult, content_hash: str | None = None) -> None:
        """Store a finished record (the same idx again replaces the row, review decision included)."""
        if result.status not in STATUSES:
            raise RecordError(f"unknown job status {result.status!r}")
        self._write(
            "INSERT OR REPLACE INTO items (idx, rec_id, status, output, info, first_score, final_score, threshold,"
            " rounds, review_reason, finished_at, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                idx,
                result.rec_id,
                result.status,
                json.dumps(result.output, ensure_ascii=False) if result.output is not None else None,
                json.dumps(dict(result.info or {}), ensure_ascii=False),
                result.first_score,
                result.final_score,
                result.threshold,
                result.rounds,
                result.review_reason,
                time.time(),
                content_hash,
            ),
        )

    def items(self, where: str = "", params: tuple[Any, ...] = ()) -> Iterator[StoredItem]:
        """Rows in input order (optionally filtered by a SQL ``where`` clause on ``items``)."""
        sql = "SELECT * FROM items" + (f" WHERE {where}" if where else "") + " ORDER BY idx"
        cursor = self._db.execute(sql, params)
        names = [d[0] for d in cursor.description]
        for values in cursor:
            row = dict(zip(names, values, strict=True))
            yield StoredItem(
                idx=row["idx"],
                result=ItemResult(
                    rec_id=row["rec_id"],
                    status=row["status"],
                    output=json.loads(row["output"]) if row["output"] else None,
                    info=json.loads(row["info"]),
                    first_score=row["first_score"],
                    final_score=row["final_score"],
                    threshold=row["threshold"],
                    rounds=row["rounds"],
                    review_reason=row["review_reason"],
                ),
                decision=row["decision"],
                decided_output=json.loads(row["decided_output"]) if row["decided_output"] else None,
            )

    def pending_review(self) -> Iterator[StoredItem]:
        return self.items("review_reason IS NOT NULL AND decision IS NULL")

    def decide(self, idx: int, decision: str, output: Mapping[str, Any] | None = None) -> None:
        """Record a reviewer's decision (``edited`` needs the corrected output record)."""
        if decision not in DECISIONS:
            raise RecordError(f"decision must be one of {DECISIONS}, got {decision!r}")
        if decision == "edited" and output is None:
            raise RecordError("an 'edited' decision needs the edited record")
        cursor = self._write(
            "UPDATE items SET decision = ?, decided_output = ?, decided_at = ?"
            " WHERE idx = ? AND review_reason IS NOT NULL",
            (decision, json.dumps(output, ensure_ascii=False) if output is not None else None, time.time(), idx),
        )
        if cursor.rowcount != 1:
            raise RecordError(f"item {idx} is not in the review queue")

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only aggregate query (used for statistics)."""
        return list(self._db.execute(query, params))
