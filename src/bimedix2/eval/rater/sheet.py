"""The clinicians' rating sheet of a conversation evaluation and the key the raters must not see.

`OUT/rating/sheet.jsonl` and `sheet.csv`: one anonymised pair a row (an opaque pair id, the language,
conversation "A" and conversation "B"), rows in a seeded random order; which model is "A" is drawn per
pair (seeded). `OUT/rating_key.json` (outside `rating/`, so the folder can be handed over alone) maps
each pair id to its script id and to the model shown as A and as B. Both are derived from the seed
and the script ids alone, so rewriting them after more conversations never moves a pair.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import EvalDataError
from ...fileio import atomic_write_json, atomic_write_jsonl, atomic_write_text, iter_jsonl, read_json

CHOICES = ("A", "B", "tie")


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def pair_id(seed: int, script_id: str) -> str:
    """The opaque id raters see for one pair."""
    return "p-" + _digest(seed, "pair", script_id)[:10]


def a_shown_first(seed: int, script_id: str) -> bool:
    """Whether model a is shown as conversation "A" for this pair (a seeded coin per pair)."""
    return int(_digest(seed, "side", script_id)[:8], 16) % 2 == 0


def sheet_paths(out: Path) -> tuple[Path, Path, Path]:
    """(sheet.jsonl, sheet.csv, rating_key.json) of an evaluation folder."""
    return out / "rating" / "sheet.jsonl", out / "rating" / "sheet.csv", out / "rating_key.json"


def transcript_text(turns: Sequence[Mapping[str, str]]) -> str:
    """A conversation as plain text for the CSV sheet."""
    return "\n".join(f"{'Patient' if t['role'] == 'user' else 'Assistant'}: {t['content']}" for t in turns)


def write_sheet(out: Path, items: Sequence[Any], convs: Mapping[str, Mapping[str, Any]], seed: int = 0) -> Path:
    """Write the sheet (JSONL and CSV) and the key for every item both models hold a conversation for."""
    rows, key = [], {}
    for item in sorted(items, key=lambda it: _digest(seed, "order", it.id)):
        first = a_shown_first(seed, item.id)
        shown = {"A": "a" if first else "b", "B": "b" if first else "a"}
        pid = pair_id(seed, item.id)
        rows.append(
            {"pair": pid, "language": item.language, "A": convs[shown["A"]][item.id], "B": convs[shown["B"]][item.id]}
        )
        key[pid] = {"id": item.id, "language": item.language, **shown}
    sheet, sheet_csv, key_path = sheet_paths(out)
    sheet.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(sheet, rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["pair", "language", "conversation_A", "conversation_B", "choice (A, B or tie)"])
    for r in rows:
        writer.writerow([r["pair"], r["language"], transcript_text(r["A"]), transcript_text(r["B"]), ""])
    atomic_write_text(sheet_csv, buffer.getvalue())
    atomic_write_json(key_path, {"seed": seed, "choices": list(CHOICES), "pairs": key})
    return sheet


def read_sheet(out: Path) -> list[dict[str, Any]]:
    """The sheet's pairs, in the raters' order."""
    sheet = sheet_paths(out)[0]
    if not sheet.is_file():
        raise EvalDataError(
            f"no rating sheet at {sheet}: run `bimedix2 eval conversations ... --out {out}` first (it writes the sheet)"
        )
    return [row for _, row in iter_jsonl(sheet, EvalDataError)]


def read_key(out: Path) -> dict[str, dict[str, str]]:
    """pair id -> {"id", "language", "A": "a"|"b", "B": "a"|"b"}."""
    path = sheet_paths(out)[2]
    if not path.is_file():
        raise EvalDataError(f"no rating key at {path}; it is written beside the sheet by `bimedix2 eval conversations`")
    return read_json(path, EvalDataError)["pairs"]
