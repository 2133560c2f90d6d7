"""What the app itself answers for requests a real HTTP server would normally stop first (driven over raw ASGI)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bimedix2.engine import Engine
from bimedix2.serve.api import create_app
from bimedix2.serve.config import ServeConfig


def call(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, dict[str, Any]]:
    """One POST /v1/chat/completions through the app's ASGI interface; (status, JSON body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(payload)


@pytest.mark.parametrize("length", [b"-5", b"abc", b"\xb2", b"5, 5", b" "])
def test_bad_content_length_is_an_openai_shaped_400(tiny_engine: Engine, length: bytes) -> None:
    app = create_app(tiny_engine, ServeConfig(model_id="m"))
    status, body = call(app, [(b"content-length", length)], b"{}")
    assert status == 400, body
    assert body["error"]["code"] == "invalid_content_length" and "Content-Length" in body["error"]["message"]
