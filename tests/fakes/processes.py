"""Waiting for a server the test started as a subprocess."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_for_health(base: str, proc: subprocess.Popen, timeout: float, output: Callable[[], str]) -> None:
    """Poll `base`/health until it answers 200; fail with the server's `output()` if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, output()
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the server at {base} did not answer /health in {timeout:.0f} s"
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM `proc` and wait for it; SIGKILL it if it is still running after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
