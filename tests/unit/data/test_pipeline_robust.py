"""Issue 15: the data pipeline against real inputs and real endpoints.

Invalid bytes in the input, records edited between runs, two runs on one folder, JSON re-asks
as repair turns, a full disk, a job state file deleted mid-run, corrected lines resumed in the
same folder (reusing the paid cache). Fixtures carry Arabic text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.translation_responder import translation_responder

from bimedix2 import cli
from bimedix2.data import jobstore
from bimedix2.data.io import iter_records, validate_file, write_jsonl
from bimedix2.data.joblock import LOCK_FILE, JobLock
from bimedix2.data.schema import Record, Turn
from bimedix2.data.translate.pipeline import JOB_DB, OUTPUT, TranslateConfig, run_translation
from bimedix2.data.translate.prompts import TRANSLATE_SYSTEM
from bimedix2.errors import RecordError
from bimedix2.llm_client import LLMClient, LLMConfig

ROOT = Path(__file__).resolve().parents[3]
ARABIC = Record(
    id="ar-0",
    conversations=(Turn("human", "ما هي الجرعة؟"), Turn("gpt", "الجرعة ٥٠٠ ملغ مرتين يوميًا.")),
    language="ar",
)


def english(i: int, text: str | None = None) -> Record:
    return Record(
        id=f"rec-{i}",
        conversations=(
            Turn("human", f"Case {i}: the patient (محمد) asks about a {i + 3} mm nodule. Benign?"),
            Turn("gpt", text or f"Likely benign; ibuprofen {200 + i} mg, review in {i + 2} weeks."),
        ),
        split="train",
    )


def config(server: FakeOpenAIServer, **kw) -> TranslateConfig:
    llm = LLMConfig(base_url=server.base_url, model="fake", max_concurrency=2, backoff_base_s=0.001)
    # thresholds 0: every translation passes, so the export shows exactly which records were done
    return TranslateConfig(llm=llm, review_sample_rate=0.0, threshold_train=0, threshold_test=0, **kw)


@pytest.fixture()
def server(repair_aware):
    with FakeOpenAIServer(repair_aware(translation_responder)) as s:
        yield s


def lines_of(records: list[Record], tmp: Path) -> list[bytes]:
    write_jsonl(records, tmp / "tmp.jsonl")
    return (tmp / "tmp.jsonl").read_bytes().splitlines(keepends=True)


def exported_sources(job: Path) -> list[str]:
    return [r.provenance["translated_from"] for r in iter_records(job / OUTPUT)]


# ---- 1: invalid bytes make one line invalid ------------------------------------------------------


def broken_input(tmp: Path) -> Path:
    lines = lines_of([english(0), english(1), ARABIC, english(3)], tmp)
    # line 2: an Arabic word cut inside a two-byte character (real-world truncation)
    lines[1] = lines[1].replace("محمد".encode(), "محمد".encode()[:3] + b"\xff")
    # line 3: valid UTF-8 bytes, but a lone surrogate escape no UTF-8 text can hold
    lines[2] = lines[2].replace("الجرعة".encode(), b"\\udcff")
    path = tmp / "in.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def test_invalid_utf8_makes_one_line_invalid_and_the_job_goes_on(server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = broken_input(tmp_path)
    offset = path.read_bytes().index(b"\xd8\xff")  # the invalid sequence starts at the cut lead byte
    summary, stats = run_translation(path, tmp_path / "job", config(server), progress=False)
    assert summary.processed_now == 2 and stats["records_translated"] == 2
    assert exported_sources(tmp_path / "job") == ["rec-0", "rec-3"]
    invalid = {i["line"]: i for i in stats["invalid_input"]}
    assert sorted(invalid) == [2, 3] and stats["invalid_input_records"] == 2
    assert "not valid UTF-8" in invalid[2]["error"] and f"offset {offset} in the file" in invalid[2]["error"]
    assert invalid[3]["id"] == "ar-0" and "not valid UTF-8 text" in invalid[3]["error"]
    saved = json.loads((tmp_path / "job" / "stats.json").read_text(encoding="utf-8"))
    assert saved["invalid_input"] == stats["invalid_input"]
    # a rerun neither dies nor pays anything again
    calls = server.completed
    summary2, _ = run_translation(path, tmp_path / "job", config(server), progress=False)
    assert summary2.processed_now == 0 and server.completed == calls


def test_validate_names_line_and_byte_offset_and_counts_valid_records(tmp_path: Path, capsys) -> None:
    path = broken_input(tmp_path)
    data = path.read_bytes()
    offset, line_start = data.index(b"\xd8\xff"), data.index(b"\n") + 1
    report = validate_file(path)
    assert (report.total, report.valid, len(report.issues)) == (4, 2, 2)
    bad = {i.line: i for i in report.issues}
    assert f"offset {offset} in the file" in bad[2].problems[0]
    assert bad[3].id == "ar-0"
    assert cli.main(["data", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"line 2 (id ?): not valid UTF-8 (byte {offset - line_start} of the line" in out
    assert "4 records, 2 valid, 2 bad record(s)" in out


# ---- 2 and 6: per-record content hash -----------------------------------------------------------


def test_a_changed_record_is_retranslated_and_reported(server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl([english(i) for i in range(4)], path)
    run_translation(path, tmp_path / "job", config(server), progress=False)
    old = {r.provenance["translated_from"]: r for r in iter_records(tmp_path / "job" / OUTPUT)}
    write_jsonl([english(0), english(1, "Malignant: refer for biopsy within 7 days."), english(2), english(3)], path)
    summary, stats = run_translation(path, tmp_path / "job", config(server), progress=False)
    assert summary.processed_now == 1 and summary.redone == ("rec-1",) and summary.already_done == 3
    assert stats["redone_this_run"] == ["rec-1"]
    new = {r.provenance["translated_from"]: r for r in iter_records(tmp_path / "job" / OUTPUT)}
    assert new["rec-1"].conversations[1].value != old["rec-1"].conversations[1].value
    assert "7" in new["rec-1"].conversations[1].value
    assert all(new[k] == old[k] for k in ("rec-0", "rec-2", "rec-3"))


def test_a_corrected_line_resumes_in_the_same_folder_reusing_the_cache(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    lines = lines_of([english(i) for i in range(5)], tmp_path)
    broken = list(lines)
    broken[2] = lines[2][:40] + b"\n"  # a truncated line
    path.write_bytes(b"".join(broken))
    _, stats = run_translation(path, tmp_path / "job", config(server), progress=False)
    assert stats["invalid_input_records"] == 1 and exported_sources(tmp_path / "job") == [
        "rec-0", "rec-1", "rec-3", "rec-4"
    ]  # fmt: skip
    before = server.completed
    path.write_bytes(b"".join(lines))  # corrected
    summary, stats = run_translation(path, tmp_path / "job", config(server), progress=False)
    assert summary.redone == ("rec-2",) and summary.processed_now == 1 and stats["invalid_input_records"] == 0
    assert exported_sources(tmp_path / "job") == [f"rec-{i}" for i in range(5)]
    one_record_calls = server.completed - before
    assert one_record_calls == 2  # translate + score of rec-2 only
    # reordered input: every moved record is redone, from the cache (nothing paid again)
    path.write_bytes(b"".join(lines[::-1]))
    summary, _ = run_translation(path, tmp_path / "job", config(server), progress=False)
    assert summary.processed_now == 4 and server.completed == before + one_record_calls
    assert exported_sources(tmp_path / "job") == [f"rec-{i}" for i in range(4, -1, -1)]
    # records removed from the input are dropped from the job and reported
    path.write_bytes(b"".join(lines[::-1][:3]))
    summary, stats = run_translation(path, tmp_path / "job", config(server), progress=False)
    assert summary.removed == ("rec-1", "rec-0") and stats["removed_this_run"] == ["rec-1", "rec-0"]
    assert exported_sources(tmp_path / "job") == ["rec-4", "rec-3", "rec-2"]


# ---- 3: one run per job folder ------------------------------------------------------------------


def test_a_second_run_on_a_locked_folder_fails_at_once_naming_the_holder(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl([english(0)], path)
    with JobLock(tmp_path / "job"):
        with pytest.raises(RecordError, match=rf"in use by another run \(pid {os.getpid()} on host \S+, started "):
            run_translation(path, tmp_path / "job", config(server), progress=False)
    assert server.completed == 0
    run_translation(path, tmp_path / "job", config(server), progress=False)  # released: runs
    assert exported_sources(tmp_path / "job") == ["rec-0"]


def test_the_lock_of_another_process_is_seen_and_released_when_it_dies(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl([english(0)], path)
    holder = textwrap.dedent(
        f"""
        import sys, time
        from bimedix2.data.joblock import JobLock
        lock = JobLock({str(tmp_path / "job")!r}).acquire()
        print("held", flush=True)
        time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RecordError, match=rf"in use by another run \(pid {proc.pid} on host "):
            run_translation(path, tmp_path / "job", config(server), progress=False)
        assert server.completed == 0
    finally:
        proc.kill()  # a crash: the OS releases the lock
        proc.wait(timeout=30)
    run_translation(path, tmp_path / "job", config(server), progress=False)
    assert exported_sources(tmp_path / "job") == ["rec-0"]
    assert (tmp_path / "job" / LOCK_FILE).is_file()


# ---- 4: JSON re-asks are repair turns -----------------------------------------------------------


def test_a_bad_json_reply_is_repaired_with_the_error_fed_back(tmp_path: Path) -> None:
    messages = [{"role": "system", "content": "Reply with JSON."}, {"role": "user", "content": "ترجم: نعم"}]
    bad = '{"turns": ["نعم",'  # cut off
    with FakeOpenAIServer() as server:
        server.script(bad, '{"turns": []}', '{"turns": ["نعم"]}')

        def check(value):
            if not value.get("turns"):
                raise ValueError('"turns" is empty')

        async def ask():
            async with LLMClient(LLMConfig(base_url=server.base_url, model="m", cache_path=tmp_path / "c.db")) as llm:
                return await llm.chat_json(messages, validate=check, attempts=3)

        import asyncio

        reply = asyncio.run(ask())
        bodies = server.bodies()
    assert reply.ok and reply.value == {"turns": ["نعم"]} and reply.attempts == 3
    assert bodies[0]["messages"] == messages
    second, third = bodies[1]["messages"], bodies[2]["messages"]
    assert second[:2] == messages and second[2] == {"role": "assistant", "content": bad}
    assert second[3]["role"] == "user" and "not valid JSON" in second[3]["content"]
    assert "only" in second[3]["content"] and "JSON" in second[3]["content"]
    assert third[2] == {"role": "assistant", "content": '{"turns": []}'} and '"turns" is empty' in third[3]["content"]
    assert len({json.dumps(b, sort_keys=True) for b in bodies}) == 3  # never byte-identical


def test_the_translation_pipeline_repairs_a_malformed_reply(server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl([english(0)], path)
    server.fault_when(lambda b: b["messages"][0]["content"] == TRANSLATE_SYSTEM, "malformed", times=1)
    run_translation(path, tmp_path / "job", config(server), progress=False)
    asks = [r.messages for r in server.requests if r.messages[0]["content"] == TRANSLATE_SYSTEM]
    assert len(asks) == 2 and asks[1][: len(asks[0])] == asks[0]
    assert [m["role"] for m in asks[1][len(asks[0]) :]] == ["assistant", "user"]
    assert exported_sources(tmp_path / "job") == ["rec-0"]


# ---- 5: disk full and a vanished state file -----------------------------------------------------


class _FullDisk:
    """A sqlite3 connection whose item writes fail with SQLite's disk-full error after ``ok`` of them."""

    def __init__(self, db: sqlite3.Connection, ok: int) -> None:
        self._db, self._ok = db, ok

    def execute(self, sql: str, params=()):  # noqa: ANN001, ANN202
        if sql.startswith("INSERT OR REPLACE INTO items"):
            if self._ok <= 0:
                raise sqlite3.OperationalError("database or disk is full")
            self._ok -= 1
        return self._db.execute(sql, params)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._db, name)


def test_disk_full_is_a_clear_error_and_finished_records_are_kept(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch, capsys
) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl([english(i) for i in range(6)], path)
    real = jobstore._connect
    monkeypatch.setattr(jobstore, "_connect", lambda p: _FullDisk(real(p), ok=2))
    argv = ["translate", "run", str(path), str(tmp_path / "job"), "--base-url", server.base_url, "--model", "fake",
            "--concurrency", "1", "--set", "review_sample_rate=0", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"disk full while saving job state in {tmp_path / 'job'}: free space and rerun" in err
    assert "finished records are kept" in err and "Traceback" not in err
    monkeypatch.setattr(jobstore, "_connect", real)
    with jobstore.JobStore(tmp_path / "job" / JOB_DB) as store:
        assert store.count() == 2
    assert cli.main(argv) == 0
    assert exported_sources(tmp_path / "job") == [f"rec-{i}" for i in range(6)]


def test_a_state_file_deleted_mid_run_is_noticed(server: FakeOpenAIServer, tmp_path: Path, repair_aware) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl([english(i) for i in range(6)], path)
    job = tmp_path / "job"
    seen = {"n": 0}

    def deleting(body):
        seen["n"] += 1
        if seen["n"] == 5:
            os.unlink(job / JOB_DB)
        return repair_aware(translation_responder)(body)

    with FakeOpenAIServer(deleting) as srv:
        with pytest.raises(RecordError, match=r"job\.sqlite was deleted or replaced while the job ran"):
            run_translation(path, job, config(srv), progress=False)
    assert not (job / JOB_DB).exists()
    assert not (job / f"{JOB_DB}-wal").exists() and not (job / f"{JOB_DB}-shm").exists()
    run_translation(path, job, config(server), progress=False)  # a rerun starts the state afresh
    assert exported_sources(job) == [f"rec-{i}" for i in range(6)]


def test_disk_full_in_the_response_cache_is_a_clear_error(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch
) -> None:
    from bimedix2 import llm_client

    path = tmp_path / "in.jsonl"
    write_jsonl([english(0)], path)

    def full(self, key, model, body):  # noqa: ANN001, ANN202
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(llm_client._ResponseCache, "put", full)
    with pytest.raises(RecordError, match=r"disk full while saving the LLM response cache in .*job: free space"):
        run_translation(path, tmp_path / "job", config(server), progress=False)


def test_translate_run_prints_redone_removed_and_invalid_lines(
    server: FakeOpenAIServer, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "in.jsonl"
    lines = lines_of([english(0), english(1), english(2)], tmp_path)
    path.write_bytes(b"".join(lines))
    argv = ["translate", "run", str(path), str(tmp_path / "job"), "--base-url", server.base_url, "--model", "fake",
            "--set", "review_sample_rate=0", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    capsys.readouterr()
    edited = lines_of([english(0, "تغيّر النص: review in 9 weeks.")], tmp_path)[0]
    path.write_bytes(edited + lines[1][:30] + b"\n")  # rec-0 edited, rec-1 cut short, rec-2 removed
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "translated 1 record(s) now (0 finished before, unchanged)" in out
    assert "2 record(s) re-done (content changed since the last run): rec-0, (line 2)" in out
    assert "1 record(s) removed from the input (dropped from the job): rec-2" in out
    assert "invalid line 2: " in out and "not valid JSON" in out
