"""Run an async per-record job over a JSONL file: streaming, bounded, resumable, with progress.

The input is read line by line (memory stays flat over 1.6M records); at most ``2 x workers``
records wait in the queue. Finished records go to the `JobStore` at once; on a rerun, records
already there are skipped. A line that is not a valid record is stored as ``invalid`` with the
reason (the job goes on); an `LLMError` (endpoint down after all retries) stops the job, keeping
everything finished so far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import RecordError
from ..fileio import JsonlLine, scan_jsonl
from .jobstore import ItemResult, JobStore
from .schema import Record, loose_id, parse_json, record_label, validate_record

Process = Callable[[int, Record], Awaitable[ItemResult]]


@dataclass(frozen=True)
class RunSummary:
    total: int
    processed_now: int
    already_done: int


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
    already = store.count()
    queue: asyncio.Queue[tuple[int, Record] | None] = asyncio.Queue(maxsize=2 * workers)
    bar = tqdm(total=total, initial=already, desc=desc, unit="rec", disable=not progress)
    done_now = 0

    async def produce() -> None:
        for idx, line in enumerate(scan_jsonl(path), 1):
            rid = loose_id(line.obj)
            stored = store.finished_id(idx)
            if stored is not None:
                if stored != rid:
                    raise RecordError(
                        f"{path}:{line.number}: the input changed since this job started (record {idx} was "
                        f"{stored!r}, now {rid!r}); use a new output folder"
                    )
                continue
            parsed = _parse(line, f"{path}:{line.number}")
            if isinstance(parsed, str):
                store.put(idx, ItemResult(rec_id=rid, status="invalid", info={"error": parsed, "line": line.number}))
                bar.update(1)
                continue
            await queue.put((idx, parsed))
        for _ in range(workers):
            await queue.put(None)

    async def work() -> None:
        nonlocal done_now
        while (item := await queue.get()) is not None:
            idx, record = item
            result = await process(idx, record)
            store.put(idx, result)
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
    return RunSummary(total=total, processed_now=done_now, already_done=already)
