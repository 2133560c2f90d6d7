"""What an evaluation writes and reads back: the per-sample generation cache, scored rows, results.json.

Layout of an output directory:
    results.json                 every task's metrics + the resolved config (merged across runs)
    <task>/predictions.jsonl     per-sample generations (the resume cache)
    <task>/scored.jsonl          per-sample predictions with their scores

The generation cache's first line holds a fingerprint of everything that changes the outputs
(model, prompt, decoding settings); a cache written under another fingerprint is refused, never
mixed in. Each later line is one finished sample, flushed as soon as its batch ends. A torn last
line (the process was killed mid-write) is dropped and regenerated.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from ..errors import EvalDataError
from ..fileio import atomic_write_json, atomic_write_jsonl, atomic_write_text, iter_jsonl
from ..types import RESEARCH_NOTICE, GenParams, Message, Reply

RESULTS_FORMAT = "bimedix2-eval-results/1"

__all__ = [
    "RESULTS_FORMAT",
    "Generator",
    "SampleCache",
    "fingerprint",
    "generate_cached",
    "load_results",
    "new_results",
    "read_scored",
    "save_results",
    "write_jsonl",
]


class Generator(Protocol):
    """What evaluation needs from `bimedix2.engine.Engine`."""

    def generate_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        params: GenParams = ...,
        sample_ids: Sequence[str] | None = ...,
    ) -> list[Reply]: ...


def fingerprint(payload: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable dict."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class SampleCache:
    """Append-only {id: record} store in one JSONL file whose first line is the settings' fingerprint."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path = path
        self.key = fingerprint(key)
        self.records: dict[str, dict[str, Any]] = {}
        if path.exists() and path.stat().st_size > 0:
            self._load()
        else:
            atomic_write_jsonl(path, [{"_fingerprint": self.key, "_key": key}])

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
            atomic_write_text(self.path, "\n".join(good) + "\n")

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.records

    def add_many(self, records: list[dict[str, Any]]) -> None:
        """Append finished records and flush them to disk."""
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                self.records[str(record["id"])] = record
            handle.flush()
            os.fsync(handle.fileno())


def generate_cached(
    engine: Generator,
    items: Sequence[tuple[str, list[Message]]],
    params: GenParams,
    cache: SampleCache,
    batch_size: int,
    desc: str,
) -> dict[str, str]:
    """Generate a reply for each (id, conversation) not yet in `cache`, batch by batch; {id: reply text}."""
    todo = [(sid, conv) for sid, conv in items if sid not in cache]
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="sample") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            replies = engine.generate_batch([conv for _, conv in batch], params, sample_ids=[sid for sid, _ in batch])
            cache.add_many(
                [
                    {
                        "id": sid,
                        "prediction": r.text,
                        "finish_reason": r.finish_reason,
                        "completion_tokens": r.completion_tokens,
                    }
                    for (sid, _), r in zip(batch, replies, strict=True)
                ]
            )
            bar.update(len(batch))
    return {sid: cache.records[sid]["prediction"] for sid, _ in items}


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write scored rows (one JSON object a line) atomically; returns how many."""
    return atomic_write_jsonl(path, rows)


def read_scored(path: Path) -> list[dict[str, Any]]:
    """A task's scored rows (`<task>/scored.jsonl`), file:line named in the error for a bad line."""
    return [row for _, row in iter_jsonl(Path(path), EvalDataError)]


def new_results(model: str) -> dict[str, Any]:
    """An empty results document for `model`."""
    return {"format": RESULTS_FORMAT, "notice": RESEARCH_NOTICE, "model": model, "tasks": {}, "config": {}}


def save_results(results: dict[str, Any], path: Path) -> None:
    """Write results.json atomically."""
    atomic_write_json(path, results)


def load_results(path: Path) -> dict[str, Any]:
    """A results file (ours or the shipped reference), checked for its format tag."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalDataError(f"results file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT or "tasks" not in data:
        raise EvalDataError(f"{path}: not a bimedix2 eval results file (format {RESULTS_FORMAT!r})")
    return data
