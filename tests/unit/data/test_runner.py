"""The streaming job runner: bounded read-ahead, stop on LLMError keeping finished work, resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bimedix2.data import runner
from bimedix2.data.io import write_jsonl
from bimedix2.data.jobstore import ItemResult, JobStore
from bimedix2.data.runner import run_records
from bimedix2.data.schema import Record, Turn
from bimedix2.errors import LLMError


def write(path: Path, n: int) -> None:
    write_jsonl(
        (Record(id=f"r{i}", conversations=(Turn("human", f"q{i}"), Turn("gpt", f"a{i}"))) for i in range(n)), path
    )


def test_read_ahead_is_bounded_by_the_queue(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "in.jsonl", 3000)
    workers, ahead, read = 4, [], [0]
    real_scan = runner.scan_jsonl

    def counting_scan(path: Path):  # noqa: ANN202
        for line in real_scan(path):
            read[0] += 1
            yield line

    monkeypatch.setattr(runner, "scan_jsonl", counting_scan)
    with JobStore(tmp_path / "job.sqlite") as store:
        done = 0

        async def process(idx: int, record: Record) -> ItemResult:
            nonlocal done
            await asyncio.sleep(0)
            ahead.append(read[0] - done)
            done += 1
            return ItemResult(rec_id=record.id, status="done", output={"id": record.id})

        summary = asyncio.run(
            run_records(tmp_path / "in.jsonl", store, process, workers=workers, desc="t", progress=False)
        )
        assert summary.processed_now == 3000 and store.count("done") == 3000
    # lines read but not finished never exceed queue (2 x workers) + one per worker + the producer's next line
    assert max(ahead) <= 3 * workers + 1


def test_llm_error_stops_the_job_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", 50)
    down = {"on": True}

    async def process(idx: int, record: Record) -> ItemResult:
        if down["on"] and idx > 20:
            raise LLMError("endpoint down")
        return ItemResult(rec_id=record.id, status="done")

    with JobStore(tmp_path / "job.sqlite") as store:
        with pytest.raises(LLMError):
            asyncio.run(run_records(tmp_path / "in.jsonl", store, process, workers=1, desc="t", progress=False))
        assert store.count() == 20
        down["on"] = False
        summary = asyncio.run(run_records(tmp_path / "in.jsonl", store, process, workers=3, desc="t", progress=False))
        assert (summary.already_done, summary.processed_now, store.count()) == (20, 30, 50)
        assert [i.result.rec_id for i in store.items()] == [f"r{i}" for i in range(50)]


def test_a_reordered_input_is_redone_per_record_not_refused(tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", 5)
    seen: list[str] = []

    async def process(idx: int, record: Record) -> ItemResult:
        seen.append(record.id)
        return ItemResult(rec_id=record.id, status="done")

    with JobStore(tmp_path / "job.sqlite") as store:
        asyncio.run(run_records(tmp_path / "in.jsonl", store, process, workers=2, desc="t", progress=False))
        lines = (tmp_path / "in.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        (tmp_path / "in.jsonl").write_text("".join(lines[1:] + lines[:1]), encoding="utf-8")
        seen.clear()
        summary = asyncio.run(run_records(tmp_path / "in.jsonl", store, process, workers=2, desc="t", progress=False))
        # every position now holds another record: all five are redone and reported, none kept stale
        assert sorted(seen) == [f"r{i}" for i in range(5)] and summary.redone == ("r1", "r2", "r3", "r4", "r0")
        assert [i.result.rec_id for i in store.items()] == ["r1", "r2", "r3", "r4", "r0"]


def test_a_job_stored_before_content_hashes_resumes_by_id(tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", 3)
    with JobStore(tmp_path / "job.sqlite") as store:
        store.put(1, ItemResult(rec_id="r0", status="done"))  # no hash, as older versions stored rows
        store.put(2, ItemResult(rec_id="other", status="done"))
    seen: list[str] = []

    async def process(idx: int, record: Record) -> ItemResult:
        seen.append(record.id)
        return ItemResult(rec_id=record.id, status="done")

    with JobStore(tmp_path / "job.sqlite") as store:
        summary = asyncio.run(run_records(tmp_path / "in.jsonl", store, process, workers=1, desc="t", progress=False))
        assert seen == ["r1", "r2"] and summary.already_done == 1 and summary.redone == ("r1",)
        assert all(store.finished(i)[1] for i in (1, 2, 3))  # hashes filled in


def test_an_unchanged_bad_line_is_not_redone_when_an_earlier_line_changes_length(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write(path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"q1", "سؤال".encode()[:3] + b"\xff")  # Arabic cut mid-character
    path.write_bytes(b"".join(lines))

    async def process(idx: int, record: Record) -> ItemResult:
        return ItemResult(rec_id=record.id, status="done")

    with JobStore(tmp_path / "job.sqlite") as store:
        asyncio.run(run_records(path, store, process, workers=1, desc="t", progress=False))
        path.write_bytes(b"".join([lines[0].replace(b'"q0"', '"سؤال أطول"'.encode()), *lines[1:]]))
        summary = asyncio.run(run_records(path, store, process, workers=1, desc="t", progress=False))
        assert summary.redone == ("r0",) and summary.already_done == 2  # the bad line moved in the file only
        (bad,) = store.invalid_lines()
        assert bad["line"] == 2 and "not valid UTF-8" in bad["error"]
        offset = path.read_bytes().index(b"\xff") - 1  # the invalid sequence starts at the cut lead byte
        assert f"offset {offset} in the file" in bad["error"]  # the stored report follows the move


class CountingStore(JobStore):
    """A job store counting the queries for finished rows."""

    batches = lookups = 0

    def finished_from(self, idx: int, limit: int) -> list[tuple[int, str, str | None]]:
        self.batches += 1
        return super().finished_from(idx, limit)

    def finished(self, idx: int) -> tuple[str, str | None] | None:
        self.lookups += 1
        return super().finished(idx)


def test_a_resume_reads_the_finished_rows_in_batches_not_one_query_per_line(tmp_path: Path) -> None:
    write(tmp_path / "in.jsonl", 9000)
    seen: list[int] = []

    async def process(idx: int, record: Record) -> ItemResult:
        seen.append(idx)
        return ItemResult(rec_id=record.id, status="done")

    with JobStore(tmp_path / "job.sqlite") as store:
        asyncio.run(run_records(tmp_path / "in.jsonl", store, process, workers=4, desc="t", progress=False))
        store._db.execute("DELETE FROM items WHERE idx % 7 = 0")  # unfinished records spread over every batch
    seen.clear()
    with CountingStore(tmp_path / "job.sqlite") as store:
        summary = asyncio.run(run_records(tmp_path / "in.jsonl", store, process, workers=4, desc="t", progress=False))
        assert sorted(seen) == list(range(7, 9001, 7)) and summary.already_done == 9000 - len(seen)
        assert store.batches == 2 and store.lookups == 0  # 7,715 finished rows, 4,096 per query
        assert [i.result.rec_id for i in store.items()] == [f"r{i}" for i in range(9000)]
