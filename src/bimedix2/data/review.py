"""Human review of queued translations in the terminal: accept, edit or reject, one at a time.

Decisions are committed to the job store one by one, so quitting (or a crash) loses nothing;
the export is rewritten when the session ends. Arabic lines are wrapped in Unicode
right-to-left embedding marks for display only; stored text is exactly what the reviewer typed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..conversation import IMAGE_PLACEHOLDER, detect_language
from ..errors import RecordError
from ..types import RESEARCH_NOTICE
from .jobstore import JobStore, StoredItem
from .schema import Turn, record_from_json, record_to_json
from .translate.pipeline import JOB_DB, OUTPUT, export_translations

RLE, PDF = "\u202b", "\u202c"
HELP = "[a]ccept  [e]dit  [r]eject  [s]kip  [q]uit"


@dataclass
class ReviewSummary:
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    skipped: int = 0
    exported: int = 0


def display(text: str) -> str:
    """Text as shown in a terminal: Arabic paragraphs embedded right-to-left (display only)."""
    if detect_language(text) != "ar":
        return text
    return "\n".join(f"{RLE}{line}{PDF}" for line in text.split("\n"))


def _show(item: StoredItem, out: TextIO, position: str) -> None:
    result = item.result
    info = dict(result.info or {})
    out.write(f"\n=== {position}  record {result.rec_id}  reason: {result.review_reason} ===\n")
    if result.first_score is not None:
        out.write(
            f"scores: first {result.first_score}, final {result.final_score} "
            f"(threshold {result.threshold}, {result.rounds} refinement round(s))\n"
        )
    for issue in info.get("issues", []) or []:
        out.write(f"  issue: {issue}\n")
    if info.get("error"):
        out.write(f"  error: {info['error']}\n")
    source = info.get("source") or []
    arabic = [t["value"] for t in result.output["conversations"]] if result.output else []
    for i in range(max(len(source), len(arabic))):
        speaker = source[i][0] if i < len(source) else "?"
        out.write(f"--- turn {i} ({speaker})\n")
        if i < len(source):
            out.write(f"EN: {source[i][1]}\n")
        out.write(f"AR: {display(arabic[i]) if i < len(arabic) else '(no translation)'}\n")


def _edit_lines(turns: list[str], inp: TextIO, out: TextIO) -> list[str]:
    """Prompt for each turn; an empty line keeps it; a literal backslash-n becomes a newline."""
    edited = []
    for i, current in enumerate(turns):
        out.write(f"turn {i} (empty keeps it): ")
        out.flush()
        line = inp.readline()
        if not line:
            raise EOFError
        line = line.rstrip("\n")
        edited.append(line.replace("\\n", "\n") if line else current)
    return edited


def _edit_in_editor(turns: list[str], editor: str) -> list[str]:
    """Open the turns in $EDITOR, separated by lines of '-----'."""
    sep = "\n-----\n"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write(sep.join(turns))
        name = fh.name
    try:
        subprocess.run([*shlex.split(editor), name], check=True)
        return Path(name).read_text(encoding="utf-8").rstrip("\n").split(sep)
    finally:
        os.unlink(name)


def _ask_turns(
    current: list[str],
    inp: TextIO,
    out: TextIO,
    editor: str | None,
    edit: Callable[[list[str]], list[str]] | None,
) -> list[str] | None:
    """The reviewer's edited turns (a callback, $EDITOR, or line by line); None at the end of input."""
    try:
        if edit is not None:
            return edit(current)
        if editor:
            return _edit_in_editor(current, editor)
        return _edit_lines(current, inp, out)
    except EOFError:
        return None


def _problem(source: list[tuple[str, str]], turns: list[str]) -> str:
    if source and len(turns) != len(source):
        return f"expected {len(source)} turns, got {len(turns)}"
    for i, text in enumerate(turns):
        if not text.strip():
            return f"turn {i} is empty"
        if source and text.count(IMAGE_PLACEHOLDER) != source[i][1].count(IMAGE_PLACEHOLDER):
            return f"turn {i} must keep its {IMAGE_PLACEHOLDER} token(s)"
    return ""


def review_session(
    job_dir: str | Path,
    *,
    inp: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    editor: str | None = None,
    edit: Callable[[list[str]], list[str]] | None = None,
) -> ReviewSummary:
    """Walk the pending review queue of a translation job; returns what the reviewer did."""
    job = Path(job_dir) / JOB_DB
    if not job.is_file():
        raise RecordError(f"{job_dir}: no translation job here ({JOB_DB} missing)")
    summary = ReviewSummary()
    out.write(RESEARCH_NOTICE + "\n" + HELP + "\n")
    with JobStore(job) as store:
        pending = list(item.idx for item in store.pending_review())
        for n, idx in enumerate(pending, 1):
            item = next(store.items("idx = ?", (idx,)))
            _show(item, out, f"{n}/{len(pending)}")
            source = [tuple(p) for p in (item.result.info or {}).get("source", [])]
            while True:
                out.write(f"{HELP} > ")
                out.flush()
                choice = inp.readline()
                if not choice:
                    choice = "q"
                choice = choice.strip().lower()[:1]
                if choice in ("a", "e") and item.result.output is None:
                    out.write("no translation to accept or edit (it failed): reject or skip\n")
                    continue
                if choice == "a":
                    store.decide(idx, "accepted")
                    summary.accepted += 1
                elif choice == "r":
                    store.decide(idx, "rejected")
                    summary.rejected += 1
                elif choice == "e":
                    turns = _ask_turns(
                        [t["value"] for t in item.result.output["conversations"]], inp, out, editor, edit
                    )
                    if turns is None:
                        choice = "q"
                        break
                    problem = _problem(source, turns)
                    if problem:
                        out.write(f"not saved: {problem}\n")
                        continue
                    store.decide(idx, "edited", _edited_output(item, source, turns))
                    summary.edited += 1
                elif choice == "s":
                    summary.skipped += 1
                elif choice != "q":
                    out.write("unknown choice\n")
                    continue
                break
            if choice == "q":
                break
        summary.exported = export_translations(store, Path(job_dir) / OUTPUT)
    out.write(
        f"\naccepted {summary.accepted}, edited {summary.edited}, rejected {summary.rejected}, "
        f"skipped {summary.skipped}; {summary.exported} records in {Path(job_dir) / OUTPUT}\n"
    )
    return summary


def _edited_output(item: StoredItem, source: list[tuple[str, str]], turns: list[str]) -> dict:
    record = record_from_json(item.result.output)
    convs = tuple(Turn(t.speaker, text) for t, text in zip(record.conversations, turns, strict=True))
    return record_to_json(record.with_(conversations=convs))
