"""Durable per-record job state in SQLite (WAL), shared by translation and rewriting jobs.

One row per input record (``idx`` = its position in the input file). A row is written, and
committed, only when the record's work is finished, so a job killed at any moment resumes by
skipping finished rows; the LLM response cache (``llm_client``) makes the unfinished records'
completed calls free on the rerun. Human review decisions live in the same rows.
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
    finished_at REAL NOT NULL
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


class JobStore:
    """SQLite-backed job state; every write is its own committed transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

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
            self._db.execute("INSERT INTO meta VALUES ('settings', ?)", (blob,))
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

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM items WHERE status = ?", (status,)).fetchone()[0])

    def put(self, idx: int, result: ItemResult) -> None:
        """Store a finished record (idempotent: the same idx twice keeps one row)."""
        if result.status not in STATUSES:
            raise RecordError(f"unknown job status {result.status!r}")
        self._db.execute(
            "INSERT OR REPLACE INTO items (idx, rec_id, status, output, info, first_score, final_score, threshold,"
            " rounds, review_reason, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        cursor = self._db.execute(
            "UPDATE items SET decision = ?, decided_output = ?, decided_at = ?"
            " WHERE idx = ? AND review_reason IS NOT NULL",
            (decision, json.dumps(output, ensure_ascii=False) if output is not None else None, time.time(), idx),
        )
        if cursor.rowcount != 1:
            raise RecordError(f"item {idx} is not in the review queue")

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only aggregate query (used for statistics)."""
        return list(self._db.execute(query, params))
