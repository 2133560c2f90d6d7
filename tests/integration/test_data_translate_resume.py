"""Kill-and-resume: the translation job killed (SIGKILL) mid-run, twice, then rerun, ends with
exactly the uninterrupted run's output; no record lost or duplicated; no finished LLM call
(committed to the response cache) is paid twice - counted at the fake server."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402
from tests.fakes.translation_responder import translation_responder  # noqa: E402

from bimedix2.data.io import iter_records, write_jsonl  # noqa: E402
from bimedix2.data.schema import Record, Turn  # noqa: E402
from bimedix2.data.translate.pipeline import CACHE_DB, JOB_DB, OUTPUT, TranslateConfig, run_translation  # noqa: E402
from bimedix2.llm_client import LLMConfig, request_key  # noqa: E402

pytestmark = pytest.mark.integration
N, CONCURRENCY = 60, 4


def records() -> list[Record]:
    return [
        Record(
            id=f"case-{i}",
            conversations=(
                Turn("human", f"<image>\nPatient {i}: a {i + 10} mm lesion on CT. Is it malignant?"),
                Turn("gpt", f"Probably benign. Repeat CT in {i % 6 + 1} months; paracetamol {500 + i} mg if pain."),
                Turn("human", "What if it grows?"),
                Turn("gpt", f"Growth beyond {i + 15} mm warrants a biopsy."),
            ),
            images=(f"imgs/{i}.png",),
            task="conversation",
            modality="CT",
            split=("train", "test")[i % 2],
        )
        for i in range(N)
    ]


def finished(job: Path) -> int:
    if not job.is_file():
        return 0
    db = sqlite3.connect(f"file:{job}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        db.close()


def cache_keys(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in db.execute("SELECT key FROM responses")}
    finally:
        db.close()


def command(inp: Path, out: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "bimedix2.cli", "translate", "run", str(inp), str(out),
        "--base-url", url, "--model", "fake", "--concurrency", str(CONCURRENCY),
        "--set", "review_sample_rate=0.25", "--set", "llm.backoff_base_s=0.01", "--no-progress",
    ]  # fmt: skip


def kill_after(cmd: list[str], job: Path, at_least: int) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while finished(job) < at_least:
            if proc.poll() is not None:
                raise AssertionError(f"job ended before the kill: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("job made no progress")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return finished(job)


def test_sigkill_twice_then_rerun_gives_exact_output_and_pays_no_finished_call_twice(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    write_jsonl(records(), inp)

    with FakeOpenAIServer(translation_responder) as ref_server:  # the uninterrupted reference run
        llm = LLMConfig(base_url=ref_server.base_url, model="fake", max_concurrency=CONCURRENCY)
        run_translation(inp, tmp_path / "ref", TranslateConfig(llm=llm, review_sample_rate=0.25), progress=False)
        reference_calls = ref_server.completed
    expected = (tmp_path / "ref" / OUTPUT).read_bytes()

    out = tmp_path / "job"
    with FakeOpenAIServer(translation_responder, latency_s=0.03) as server:
        cmd = command(inp, out, server.base_url)
        done1 = kill_after(cmd, out / JOB_DB, 10)
        seen1 = len(server.requests)
        keys1 = cache_keys(out / CACHE_DB)
        done2 = kill_after(cmd, out / JOB_DB, done1 + 15)
        seen2 = len(server.requests)
        keys2 = cache_keys(out / CACHE_DB)
        assert 10 <= done1 < done2 < N
        final = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr[-2000:]
        requests = server.requests

    # exact output: same bytes as the uninterrupted run, every record once, in input order
    assert (out / OUTPUT).read_bytes() == expected
    ids = [r.provenance["translated_from"] for r in iter_records(out / OUTPUT)]
    assert len(ids) == len(set(ids))
    assert finished(out / JOB_DB) == N

    # no call whose reply was committed before a kill was sent again afterwards
    def key(body: dict) -> str:
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        return request_key(body["model"], body["messages"], params)

    assert all(r.outcome == "ok" for r in requests)
    assert not {key(r.body) for r in requests[seen1:]} & keys1
    assert not {key(r.body) for r in requests[seen2:]} & keys2
    # only calls in flight at a kill (at most CONCURRENCY each time) may be paid twice
    distinct = {key(r.body) for r in requests}
    assert len(distinct) == reference_calls
    assert 0 <= len(requests) - reference_calls <= 2 * CONCURRENCY
