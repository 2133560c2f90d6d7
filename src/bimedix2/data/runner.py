"""Run an async per-record job over a JSONL file: streaming, bounded, resumable, with progress.

The input is read line by line (memory stays flat over 1.6M records); at most ``2 x workers``
records wait in the queue. Finished records go to the `JobStore` at once; on a rerun, records
already there are skipped. A line that is not a valid record is stored as ``invalid`` with the
reason (the job goes on); an `LLMError` (endpoint down after all retries) stops the job, keeping
everything finished so far.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import DataError
from .jobstore import ItemResult, JobStore
from .schema import Record, record_from_json, validate_record

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


def _parse(line: str, where: str) -> Record | str:
    try:
        record = record_from_json(json.loads(line), where)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg})"
    except DataError as exc:
        return str(exc)
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
        raise DataError(f"{path}: input file not found")
    total = count_lines(path)
    already = store.count()
    queue: asyncio.Queue[tuple[int, Record] | None] = asyncio.Queue(maxsize=2 * workers)
    bar = tqdm(total=total, initial=already, desc=desc, unit="rec", disable=not progress)
    done_now = 0

    async def produce() -> None:
        with path.open("r", encoding="utf-8") as fh:
            idx = 0
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                idx += 1
                stored = store.finished_id(idx)
                if stored is not None:
                    if stored != _loose_id(line):
                        raise DataError(
                            f"{path}:{line_no}: the input changed since this job started (record {idx} was "
                            f"{stored!r}, now {_loose_id(line)!r}); use a new output folder"
                        )
                    continue
                parsed = _parse(line, f"{path}:{line_no}")
                if isinstance(parsed, str):
                    rid = _loose_id(line)
                    store.put(idx, ItemResult(rec_id=rid, status="invalid", info={"error": parsed, "line": line_no}))
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


def _loose_id(line: str) -> str:
    try:
        obj = json.loads(line)
        return str(obj.get("id", "")) if isinstance(obj, dict) else ""
    except json.JSONDecodeError:
        return ""
