"""`bimedix2 serve` as a user runs it: a subprocess on 127.0.0.1, API key from the environment."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.fakes.processes import wait_for_health

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def non_loopback_addresses() -> list[str]:
    """This machine's outward IPv4 address, found by routing a UDP socket (no packet is sent)."""
    found = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            found.add(s.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def test_serve_command_end_to_end(tiny_llava_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "BIMEDIX2_API_KEY": "env-key"}
    cmd = [
        sys.executable,
        "-m",
        "bimedix2.cli",
        "serve",
        "--model",
        str(tiny_llava_path),
        "--port",
        str(port),
        "--served-model-name",
        "tiny",
        "--log-requests",  # without -v: it must log on its own, and never a query string or header
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc, 120, lambda: proc.stdout.read() if proc.stdout else "")
        assert httpx.get(f"{base}/v1/models").status_code == 401
        assert httpx.get(f"{base}/v1/models?api_key=query-secret", headers={"X-Token": "hdr-secret"}).status_code == 401
        auth = {"Authorization": "Bearer env-key"}
        body = {"model": "tiny", "messages": [{"role": "user", "content": "ما هو فقر الدم؟"}], "max_tokens": 3}
        reply = httpx.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=60)
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
        page = httpx.get(f"{base}/")
        assert page.status_code == 200 and 'id="notice"' in page.text
        # loopback only by default: the machine's other addresses refuse the connection
        for address in non_loopback_addresses():
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{address}:{port}/health", timeout=2)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "Research use only" in out
    assert "ما هو فقر الدم" not in out  # prompts are never logged
    assert re.search(r"GET /v1/models 401 \d+ ms", out) and re.search(r"POST /v1/chat/completions 200 \d+ ms", out), out
    assert "query-secret" not in out and "hdr-secret" not in out and "env-key" not in out and "api_key" not in out
