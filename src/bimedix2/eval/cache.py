"""Per-sample JSONL cache so an interrupted run resumes where it stopped.

The first line holds a fingerprint of everything that changes the outputs (model, prompt,
decoding settings); a cache written under another fingerprint is refused, never mixed in.
Each later line is one finished sample, flushed as soon as its batch ends. A torn last line
(the process was killed mid-write) is dropped and regenerated.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import EvalDataError


def fingerprint(payload: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable dict."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class SampleCache:
    """Append-only {id: record} store in one JSONL file."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path = path
        self.key = fingerprint(key)
        self.records: dict[str, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > 0:
            self._load()
        else:
            with path.open("w", encoding="utf-8") as handle:
                handle.write(
                    json.dumps({"_fingerprint": self.key, "_key": key}, default=str, ensure_ascii=False) + "\n"
                )

    def _load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        head = json.loads(lines[0]) if lines else {}
        if head.get("_fingerprint") != self.key:
            raise EvalDataError(
                f"{self.path} was written with other settings (model, prompt or decoding changed); "
                "use another --out directory, or delete that file to start this task over"
            )
        good = [lines[0]]
        for i, line in enumerate(lines[1:], 2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines):  # torn last line from an interrupted run
                    break
                raise EvalDataError(f"{self.path}:{i}: corrupt cache line; delete the file to start over") from None
            self.records[str(record["id"])] = record
            good.append(line)
        if len(good) != len(lines):
            self.path.write_text("\n".join(good) + "\n", encoding="utf-8")

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.records

    def get(self, sample_id: str) -> dict[str, Any] | None:
        return self.records.get(sample_id)

    def add_many(self, records: list[dict[str, Any]]) -> None:
        """Append finished records and flush them to disk."""
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                self.records[str(record["id"])] = record
            handle.flush()
            os.fsync(handle.fileno())
