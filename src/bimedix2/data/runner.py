"""Run an async per-record job over a JSONL file: streaming, bounded, resumable, with progress.

The input is read line by line (memory stays flat over 1.6M records); at most ``2 x workers``
records wait in the queue. Finished records go to the `JobStore` at once, with a hash of their
content; on a rerun, a record whose position and content are unchanged is skipped, a changed
one (edited text, a corrected line, a moved record) is done again and reported in
``RunSummary.redone``, and records past the end of a shortened input are dropped and reported in
``RunSummary.removed``. Redoing costs nothing already paid for: the LLM response cache is keyed
by the request, not the position. A line that is not a valid record (bad UTF-8, JSON, structure)
is stored as ``invalid`` with its line and the reason (the job goes on); an `LLMError` (endpoint
down after all retries) stops the job, keeping everything finished so far.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import RecordError
from ..fileio import JsonlLine, scan_jsonl
from .jobstore import ItemResult, JobStore
from .schema import Record, loose_id, parse_json, record_label, validate_record

Process = Callable[[int, Record], Awaitable[ItemResult]]


REPORT_IDS = 1000  # at most this many ids are listed in `RunSummary.redone` / `removed`


@dataclass(frozen=True)
class RunSummary:
    total: int
    processed_now: int
    already_done: int  # finished before and unchanged, so kept
    redone: tuple[str, ...] = ()  # ids of records done again because their content changed (first REPORT_IDS)
    redone_count: int = 0
    removed: tuple[str, ...] = ()  # ids of finished records no longer in the input (first REPORT_IDS)
    removed_count: int = 0


_FILE_OFFSET = re.compile(r", offset \d+ in the file")


def content_hash(line: JsonlLine) -> str:
    """A hash of what a line holds (the parsed object, or why it is not one): equal content, equal hash.

    A bad line's file offset is left out: it moves when an earlier line changes length.
    """
    if line.obj is not None:
        blob = json.dumps(line.obj, sort_keys=True, ensure_ascii=True)
    else:
        blob = "!" + _FILE_OFFSET.sub("", str(line.problem))
    return hashlib.sha256(blob.encode("ascii", "backslashreplace")).hexdigest()[:32]


def count_lines(path: Path) -> int:
    """Number of non-blank lines (a fast byte scan, for the progress bar)."""
    count = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                count += 1
    return count


def _parse(line: JsonlLine, where: str) -> Record | str:
    """The record on a line, or why it cannot be processed (worded as ``data validate`` words it)."""
    if line.obj is None:
        return str(line.problem)
    record, problems = parse_json(line.obj)
    if record is None:
        return record_label(where, loose_id(line.obj)) + "; ".join(problems)
    problems = validate_record(record)
    return record if not problems else "; ".join(problems)


def _safe(text: str) -> str:
    """``text`` storable as UTF-8: a lone surrogate (from a ``\\udXXX`` escape) is written as that escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _StoredRows:
    """The job store's finished rows as the input is read in order, fetched ``batch`` rows per query.

    Only rows at or past the reader's position are fetched, and this run writes only rows the
    reader has passed, so a batch read ahead is never stale; a fresh job costs one query in all.
    """

    def __init__(self, store: JobStore, batch: int = 4096) -> None:
        self._store, self._batch = store, batch
        self._rows: dict[int, tuple[str, str | None]] = {}
        self._upto = 1  # positions below this are covered by ``_rows``

    def get(self, idx: int) -> tuple[str, str | None] | None:
        if idx >= self._upto:
            rows = self._store.finished_from(idx, self._batch)
            self._rows = {i: (rid, digest) for i, rid, digest in rows}
            self._upto = rows[-1][0] + 1 if len(rows) == self._batch else sys.maxsize
        return self._rows.get(idx)


def _stored_matches(
    store: JobStore, stored: tuple[str, str | None] | None, idx: int, rid: str, digest: str
) -> bool | None:
    """None: nothing stored at ``idx``; True: finished with this content (kept); False: content changed."""
    if stored is None:
        return None
    stored_id, stored_hash = stored
    if stored_hash is None:  # stored before content hashes: the id is all there is to compare
        if stored_id != rid:
            return False
        store.set_hash(idx, digest)
        return True
    return stored_hash == digest


async def run_records(
    input_path: str | Path,
    store: JobStore,
    process: Process,
    *,
    workers: int,
    desc: str,
    progress: bool = True,
) -> RunSummary:
    """Apply ``process`` to every unfinished record of ``input_path``; each result is stored at once."""
    path = Path(input_path)
    if not path.is_file():
        raise RecordError(f"{path}: input file not found")
    total = count_lines(path)
    queue: asyncio.Queue[tuple[int, Record, str] | None] = asyncio.Queue(maxsize=2 * workers)
    bar = tqdm(total=total, desc=desc, unit="rec", disable=not progress)
    done_now = kept = redone_count = 0
    redone: list[str] = []
    removed: list[str] = []
    removed_count = 0

    async def produce() -> None:
        nonlocal kept, redone_count, removed_count
        last = 0
        stored = _StoredRows(store)
        for idx, line in enumerate(scan_jsonl(path), 1):
            last = idx
            rid = _safe(loose_id(line.obj))
            digest = content_hash(line)
            match = _stored_matches(store, stored.get(idx), idx, rid, digest)
            if match and line.obj is not None:
                kept += 1
                bar.update(1)
                continue
            if match:  # the same bad line: stored again, as its file offset may have moved
                kept += 1
                info = {"error": _safe(str(line.problem)), "line": line.number}
                store.put(idx, ItemResult(rec_id=rid, status="invalid", info=info), digest)
                bar.update(1)
                continue
            if match is False:
                redone_count += 1
                if len(redone) < REPORT_IDS:
                    redone.append(rid or f"(line {line.number})")
            parsed = _parse(line, f"{path}:{line.number}")
            if isinstance(parsed, str):
                info = {"error": _safe(parsed), "line": line.number}
                store.put(idx, ItemResult(rec_id=rid, status="invalid", info=info), digest)
                bar.update(1)
                continue
            await queue.put((idx, parsed, digest))
        ids, removed_count = store.remove_after(last, REPORT_IDS)
        removed.extend(ids)
        for _ in range(workers):
            await queue.put(None)

    async def work() -> None:
        nonlocal done_now
        while (item := await queue.get()) is not None:
            idx, record, digest = item
            result = await process(idx, record)
            store.put(idx, result, digest)
            done_now += 1
            bar.update(1)

    try:
        tasks = [asyncio.create_task(produce())] + [asyncio.create_task(work()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    finally:
        bar.close()
    store.check_file()
    return RunSummary(
        total=total,
        processed_now=done_now,
        already_done=kept,
        redone=tuple(redone),
        redone_count=redone_count,
        removed=tuple(removed),
        removed_count=removed_count,
    )
