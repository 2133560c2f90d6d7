"""The benchmarks' asyncio fake endpoint: answers concurrent requests after its latency, logs tagged requests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from bimedix2.llm_client import LLMClient, LLMConfig

ROOT = Path(__file__).resolve().parents[3]


def test_async_fake_serves_concurrent_requests_and_logs_their_tags() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "tests.fakes.async_openai_server", "--latency", "0.2", "--tag", r"Patient (\d+):"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")

        async def ask():
            async with LLMClient(LLMConfig(base_url=url, model="m", max_concurrency=16)) as llm:
                t0 = time.monotonic()
                replies = await asyncio.gather(
                    *(llm.chat([{"role": "user", "content": f"Patient {i}: ألم في الصدر"}]) for i in range(32))
                )
                return replies, t0

        replies, t0 = asyncio.run(ask())
        log = httpx2.get(url.removesuffix("/v1") + "/_log", params={"since": 0}).json()
        tail = httpx2.get(url.removesuffix("/v1") + "/_log", params={"since": 30}).json()
        assert [r.text for r in replies] == [f"echo: Patient {i}: ألم في الصدر" for i in range(32)]
        assert log["requests"] == 32 and log["peak_inflight"] == 16  # the client's bound, all at once
        assert sorted(int(tag) for _, tag in log["entries"]) == list(range(32))
        assert all(t > t0 for t, _ in log["entries"]) and tail["entries"] == log["entries"][30:]
        assert httpx2.get(url.removesuffix("/v1") + "/other").status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
