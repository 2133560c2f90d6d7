"""Per-rater rating files: `OUT/rating/ratings/<rater>.json`, rewritten atomically on every choice."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import ConfigError, EvalDataError
from ...fileio import atomic_write_json, read_json
from .sheet import CHOICES

RATER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_rater(name: str) -> str:
    """A rater name usable as a file name (letters, digits, _ . -; up to 64), else ConfigError."""
    if not RATER_NAME.fullmatch(name or ""):
        raise ConfigError(
            f"--rater {name!r}: use 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit)"
        )
    return name


def ratings_dir(out: Path) -> Path:
    return out / "rating" / "ratings"


class RatingStore:
    """One rater's choices ({pair: {"choice", "at"}}), saved whole and atomically after each change."""

    def __init__(self, out: Path, rater: str, pairs: set[str]):
        self.rater = check_rater(rater)
        self.pairs = pairs
        self.path = ratings_dir(out) / f"{rater}.json"
        self._lock = threading.Lock()
        self.ratings: dict[str, dict[str, str]] = {}
        if self.path.exists():
            data = read_json(self.path, EvalDataError)
            if data.get("rater") != rater:
                raise EvalDataError(f"{self.path} belongs to rater {data.get('rater')!r}, not {rater!r}")
            self.ratings = dict(data.get("ratings") or {})

    def choices(self) -> dict[str, str]:
        return {pid: r["choice"] for pid, r in self.ratings.items()}

    def rate(self, pair: str, choice: str) -> None:
        """Record `choice` (A, B or tie) for `pair` and write the file."""
        if pair not in self.pairs:
            raise KeyError(pair)
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {list(CHOICES)}")
        with self._lock:
            self.ratings[pair] = {"choice": choice, "at": datetime.now(UTC).isoformat(timespec="seconds")}
            atomic_write_json(self.path, {"rater": self.rater, "ratings": self.ratings})


def load_all(out: Path) -> dict[str, dict[str, str]]:
    """{rater: {pair: choice}} from every rating file of an evaluation."""
    folder = ratings_dir(out)
    found: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data: dict[str, Any] = read_json(path, EvalDataError)
        rater = str(data.get("rater") or path.stem)
        choices = {pid: r["choice"] for pid, r in (data.get("ratings") or {}).items()}
        bad = sorted({c for c in choices.values() if c not in CHOICES})
        if bad:
            raise EvalDataError(f"{path}: unknown choice(s) {bad}; expected {list(CHOICES)}")
        found[rater] = choices
    return found
