"""The data pipeline with the toolkit's own server as its LLM (issue 15 defect 7, "done when").

`bimedix2 serve` runs the real SmolLM2-135M GGUF (llama.cpp engine) as a subprocess;
`bimedix2 translate run` and `bimedix2 data rewrite vqa-detail` run against it as a user runs them.
The translation prompts and a record's text hold a literal `<image>`, which the server once
refused with 400 (the job then died). Now both jobs finish (exit 0), replies the small
English-only model gets wrong are recorded as failures in the job state, and a rerun resumes
without asking the server anything (no new request in its access log, no call in the job's usage).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes.processes import stop_process, wait_for_health

from bimedix2.data.io import write_jsonl
from bimedix2.data.schema import Record, Turn

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVED = "smollm2"
POSTED = re.compile(r"POST /v1/chat/completions (\d{3}) \d+ ms")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records() -> list[Record]:
    return [
        Record(
            id="vqa-1",
            conversations=(Turn("human", "<image>\nIs there a pleural effusion?"), Turn("gpt", "yes")),
            images=("imgs/1.png",),
            task="vqa",
            modality="X-ray",
            split="test",
        ),
        Record(
            id="qa-2",
            conversations=(
                Turn("human", "What is the first-line treatment of iron deficiency anemia?"),
                Turn("gpt", "Oral iron"),
            ),
            task="chat",
            split="train",
        ),
        Record(
            id="ar-3",
            conversations=(Turn("human", "ما هو علاج فقر الدم؟"), Turn("gpt", "الحديد")),
            language="ar",
            task="chat",
            split="train",
        ),
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`bimedix2 serve` on SmolLM2's GGUF; yields (base URL with /v1, its log file)."""
    from bimedix2.model.loader import embedded_default_gguf

    try:
        gguf = embedded_default_gguf()
    except Exception as exc:  # noqa: BLE001 - report why the real model is absent
        pytest.skip(f"embedded default model not installed: {exc}")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[cpu]')")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [
        sys.executable, "-m", "bimedix2.cli", "serve", "--model", str(gguf), "--engine", "llama-cpp",
        "--port", str(port), "--served-model-name", SERVED, "--ctx-size", "2048", "--threads", "1",
        "--default-max-tokens", "32", "--log-requests",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("BIMEDIX2_API_KEY", "OPENAI_API_KEY")}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc, 120, lambda: log.read_text())
        yield f"{base}/v1", log
    finally:
        stop_process(proc)


def _posts(log: Path) -> list[str]:
    """Status codes of the chat requests the server logged so far."""
    return POSTED.findall(log.read_text())


def _run(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "bimedix2.cli", *args, "--base-url", url, "--model", SERVED,
        "--concurrency", "2", "--no-progress", "--set", "json_attempts=2", "--set", "llm.timeout_s=120",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _items(job: Path) -> dict[str, tuple[str, dict]]:
    db = sqlite3.connect(f"file:{job / 'job.sqlite'}?mode=ro", uri=True)
    try:
        return {rid: (status, json.loads(info or "{}")) for rid, status, info in db.execute(
            "SELECT rec_id, status, info FROM items ORDER BY idx"
        )}  # fmt: skip
    finally:
        db.close()


def _resumes_without_asking(args: list[str], url: str, log: Path, out: Path) -> None:
    before = len(_posts(log))
    rerun = _run(args, url)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    usage = json.loads((out / "stats.json").read_text())["llm_usage_this_run"]
    assert usage["calls"] == 0 and usage["cache_hits"] == 0, usage
    assert len(_posts(log)) == before


def test_translate_job_runs_against_bimedix2_serve(server: tuple[str, Path], tmp_path: Path) -> None:
    url, log = server
    source = tmp_path / "in.jsonl"
    write_jsonl(_records(), source)
    out = tmp_path / "translated"
    args = ["translate", "run", str(source), str(out), "--config", str(ROOT / "configs/data/translate.yaml"),
            "--set", "max_rounds=0", "--set", "review_sample_rate=0"]  # fmt: skip
    first = _run(args, url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr, first.stderr
    posts = _posts(log)
    assert posts and set(posts) == {"200"}, posts  # the prompts' literal <image> is no longer a 400

    items = _items(out)
    assert items["ar-3"][0] == "skipped"
    english = {rid: item for rid, item in items.items() if rid != "ar-3"}
    assert {status for status, _ in english.values()} <= {"done", "review", "failed"}
    failures = [info["error"] for status, info in english.values() if status == "failed"]
    assert failures, "SmolLM2-135M in 32 tokens was expected to miss the JSON contract at least once"
    assert all(e.startswith(("translation failed: ", "scoring failed: ")) for e in failures), failures
    assert not any("HTTP" in e for e in failures), failures  # model mistakes, not refusals

    stats = json.loads((out / "stats.json").read_text())
    assert stats["records_translated"] == 2 and stats["skipped_not_english"] == 1
    assert stats["sent_to_humans"]["failed"] == len(failures)
    usage = stats["llm_usage_this_run"]
    assert usage["errors"] == 0 and usage["calls"] == len(posts) and usage["json_failures"] >= len(failures)
    _resumes_without_asking(args, url, log, out)


def test_rewrite_job_runs_against_bimedix2_serve(server: tuple[str, Path], tmp_path: Path) -> None:
    url, log = server
    source = tmp_path / "in.jsonl"
    write_jsonl(_records(), source)
    out = tmp_path / "rewritten"
    args = ["data", "rewrite", "vqa-detail", str(source), str(out), "--config",
            str(ROOT / "configs/data/rewrite.yaml"), "--set", "review_sample_rate=0"]  # fmt: skip
    before = len(_posts(log))
    first = _run(args, url)
    assert first.returncode == 0, first.stdout + first.stderr
    posts = _posts(log)[before:]
    assert posts and set(posts) == {"200"}, posts

    items = _items(out)
    assert items["ar-3"][0] == "skipped"
    for rid in ("vqa-1", "qa-2"):
        status, info = items[rid]
        assert status in ("done", "failed"), (rid, status, info)
        if status == "failed":
            assert info["attempts"] == 2 and "HTTP" not in info["error"], info
    stats = json.loads((out / "stats.json").read_text())
    failed = sum(1 for status, _ in items.values() if status == "failed")
    assert stats["failed"] == failed and stats["written"] == 2 - failed and stats["skipped"] == 1
    assert stats["llm_usage_this_run"]["errors"] == 0 and stats["llm_usage_this_run"]["calls"] == len(posts)
    _resumes_without_asking(args, url, log, out)
