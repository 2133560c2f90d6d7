"""Hostile requests a browser page, a stranger or a broken client can send: each is refused in OpenAI's error shape.

DNS rebinding (a foreign Host), cross-origin browser requests (Origin), simple-request bodies that are
not JSON (text/plain), what open routes tell a stranger, and the CORS middleware's own refusals.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from bimedix2.engine import Engine
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig

pytestmark = pytest.mark.integration
MODEL = "bimedix2-tiny"
KEY = "s3cret-key"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "ما هو فقر الدم؟"}], "max_tokens": 2}


@contextlib.contextmanager
def server(engine: Engine, **config: object) -> Iterator[str]:
    app = create_app(engine, ServeConfig(model_id=MODEL, **config))  # type: ignore[arg-type]
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="module")
def base(tiny_engine: Engine) -> Iterator[str]:
    with server(tiny_engine) as url:
        yield url


def openai_error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert error["code"] == code and error["type"] and error["message"], error
    return error


def post_chat(base: str, headers: dict[str, str] | None = None, **kw: object) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json=CHAT, headers=headers or {}, timeout=60, **kw)  # type: ignore[arg-type]


def test_foreign_host_is_refused_on_every_route(base: str) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 still sends `Host: evil.example`."""
    for method, path in (("POST", "/v1/chat/completions"), ("GET", "/health"), ("GET", "/"), ("GET", "/v1/models")):
        r = httpx.request(method, base + path, headers={"Host": "evil.example"}, json=CHAT, timeout=60)
        error = openai_error(r, 400, "invalid_host")
        assert "evil.example" in str(error["message"]) and "--allowed-host" in str(error["message"])
    port = base.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert post_chat(base, {"Host": host}).status_code == 200, host


def test_the_issues_curl_is_refused(base: str) -> None:
    """`curl -H 'Host: evil.example' -H 'Origin: http://evil.example' -H 'Content-Type: text/plain' -d '{...}'`."""
    raw = httpx.Request("POST", base, json=CHAT).content
    evil = {"Host": "evil.example", "Origin": "http://evil.example", "Content-Type": "text/plain"}
    post = lambda headers: httpx.post(f"{base}/v1/chat/completions", content=raw, headers=headers, timeout=60)  # noqa: E731
    openai_error(post(evil), 400, "invalid_host")  # each layer refuses it on its own:
    openai_error(post({**evil, "Host": base.removeprefix("http://")}), 403, "cross_site_request")
    del evil["Origin"]
    openai_error(post({**evil, "Host": base.removeprefix("http://")}), 415, "unsupported_media_type")


def test_allowed_hosts_option(tiny_engine: Engine) -> None:
    with server(tiny_engine, allowed_hosts=("chat.example",)) as url:
        assert post_chat(url, {"Host": "chat.example"}).status_code == 200
        openai_error(post_chat(url, {"Host": "evil.example"}), 400, "invalid_host")
    with server(tiny_engine, allowed_hosts=("*",)) as url:
        assert post_chat(url, {"Host": "anything.example"}).status_code == 200


def test_cross_origin_browser_requests_are_refused(base: str) -> None:
    for origin in ("http://evil.example", "http://localhost:3000", "null", f"{base}.evil.example"):
        openai_error(post_chat(base, {"Origin": origin}), 403, "cross_site_request")
    # a same-site page on another port sends Sec-Fetch-Site: same-site, not cross-site: the Origin decides
    openai_error(
        post_chat(base, {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}), 403, "cross_site_request"
    )
    # the server's own page (the web chat) is same-origin
    same = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
    assert post_chat(base, same).status_code == 200
    port = base.rsplit(":", 1)[1]
    assert post_chat(base, {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"}).status_code == 200
    # a refused preflight is OpenAI-shaped and grants nothing
    r = httpx.options(
        f"{base}/v1/chat/completions",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    openai_error(r, 403, "cross_site_request")
    assert not any(h.startswith("access-control-") for h in r.headers), r.headers


def test_allow_origin_option_uses_cors(tiny_engine: Engine) -> None:
    app_origin = "https://app.example"
    with server(tiny_engine, allowed_origins=(app_origin,)) as url:
        r = post_chat(url, {"Origin": app_origin, "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app_origin
        preflight = httpx.options(
            f"{url}/v1/chat/completions",
            headers={
                "Origin": app_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == app_origin
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        openai_error(post_chat(url, {"Origin": "http://evil.example"}), 403, "cross_site_request")


def test_json_routes_need_application_json(base: str) -> None:
    raw = httpx.Request("POST", base, json=CHAT).content
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = httpx.post(f"{base}/v1/chat/completions", content=raw, headers=headers, timeout=60)
        error = openai_error(r, 415, "unsupported_media_type")
        assert "application/json" in str(error["message"])
    ok = httpx.post(
        f"{base}/v1/chat/completions", content=raw, headers={"Content-Type": "Application/JSON; charset=utf-8"}
    )
    assert ok.status_code == 200, ok.text


def test_keyed_server_tells_strangers_only_its_status(tiny_engine: Engine) -> None:
    with server(tiny_engine, api_key=KEY) as url:
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        info = httpx.get(f"{url}/api/info").json()
        assert set(info) == {"auth", "notice"} and info["auth"] is True  # the web chat learns it needs a key
        openai_error(httpx.get(f"{url}/openapi.json"), 401, "invalid_api_key")
        for path in ("/health", "/api/info", "/openapi.json", "/"):
            assert MODEL not in httpx.get(url + path).text, path
        key = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{url}/health", headers=key).json()["model"] == MODEL
        full = httpx.get(f"{url}/api/info", headers=key).json()
        assert full["model"] == MODEL and full["auth"] is True and "vision" in full
        schema = httpx.get(f"{url}/openapi.json", headers=key)
        assert schema.status_code == 200 and "/v1/chat/completions" in schema.json()["paths"]


def wait_for(condition, what: str, limit: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def send_raw(base: str, body: dict[str, object]) -> socket.socket:
    """A non-streaming request sent whole on a raw socket, its reply never read (close it to hang up)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    raw = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
    return sock


def test_non_streaming_client_that_hangs_up_is_cancelled_while_running(paced_tiny_engine: Engine) -> None:
    body = {**CHAT, "max_tokens": 1500, "temperature": 0}
    app = create_app(paced_tiny_engine, ServeConfig(model_id=MODEL))
    batcher = app.state.batcher
    with serve_in_thread(app) as url:
        sock = send_raw(url, body)
        wait_for(lambda: batcher.running == 1, "the request to run")
        sock.close()
        wait_for(lambda: batcher.stats.cancelled == 1, "the server to notice the hang-up")
        wait_for(lambda: batcher.running == 0, "the batch to end")
        assert batcher.stats.completed == 0 and batcher.stats.generated_tokens < 1500


def test_non_streaming_client_that_hangs_up_is_dropped_from_the_queue(tiny_engine: Engine) -> None:
    app = create_app(tiny_engine, ServeConfig(model_id=MODEL, batch_window_s=0.0))
    batcher = app.state.batcher
    with serve_in_thread(app) as url:
        with tiny_engine._lock:  # the engine is busy: the first request cannot start, the second queues
            first = send_raw(url, CHAT)
            wait_for(lambda: batcher.running == 1 or batcher.queued == 0 and batcher.stats.batches == 1, "a batch")
            second = send_raw(url, {**CHAT, "max_tokens": 3})
            wait_for(lambda: batcher.queued == 1, "the second request to queue")
            second.close()
            wait_for(lambda: batcher.queued == 0, "the hung-up request to leave the queue")  # while the engine is busy
            assert batcher.stats.cancelled == 1
        first.settimeout(60)
        assert first.recv(100).startswith(b"HTTP/1.1 200")
        first.close()
        assert batcher.stats.completed == 1


def test_log_requests_works_on_its_own_and_logs_no_query_or_headers(
    tiny_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """No logging configured at INFO (as without -v): --log-requests enables its own logger."""
    assert not logging.getLogger("bimedix2").isEnabledFor(logging.INFO)
    with server(tiny_engine, api_key=KEY, log_requests=True) as url:
        httpx.get(f"{url}/v1/models?api_key=query-secret", headers={"Authorization": "Bearer wrong-header-secret"})
        body = {**CHAT, "messages": [{"role": "user", "content": "Patient Qwertyuiop has chest pain"}]}
        r = httpx.post(
            f"{url}/v1/chat/completions?token=query-secret", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert r.status_code == 200
        httpx.get(f"{url}/health", headers={"Host": "evil.example"})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bimedix2.serve")]
    assert any(re.fullmatch(r"GET /v1/models 401 \d+ ms", line) for line in lines), lines
    assert any(re.fullmatch(r"POST /v1/chat/completions 200 \d+ ms", line) for line in lines), lines
    assert any(re.fullmatch(r"GET /health 400 \d+ ms", line) for line in lines), lines
    everything = "\n".join(lines) + caplog.text
    for secret in ("query-secret", "wrong-header-secret", KEY, "Qwertyuiop", "api_key", "evil.example"):
        assert secret not in everything, secret


def raw_socket(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(60)
    return sock


def test_hang_up_mid_body_is_an_info_level_client_event(tiny_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bimedix2")
    uvicorn_errors = logging.getLogger("uvicorn.error")  # uvicorn's own logger does not propagate to the root
    uvicorn_errors.addHandler(caplog.handler)
    app = create_app(tiny_engine, ServeConfig(model_id=MODEL))
    try:
        with serve_in_thread(app) as url:
            sock = raw_socket(url)
            head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + b'{"model": "bimedix2-ti')
            sock.close()
            wait_for(lambda: any("disconnected" in r.getMessage() for r in caplog.records), "the hang-up to be seen")
            assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=60).status_code == 200  # still fine
    finally:
        uvicorn_errors.removeHandler(caplog.handler)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert gone and all(r.levelno == logging.INFO and r.exc_info is None for r in gone), gone
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text


def test_a_stalled_body_gets_408_after_the_body_timeout(tiny_engine: Engine) -> None:
    with server(tiny_engine, body_timeout_s=0.5) as url:
        sock = raw_socket(url)
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + b'{"model": ')  # and nothing more
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        sock.close()
        assert reply.startswith(b"HTTP/1.1 408"), reply
        error = json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "body_timeout" and "0.5 s" in error["message"]


def test_malformed_content_length_is_answered_by_uvicorn_before_the_app(base: str) -> None:
    """Documented in docs/serving.md: h11 refuses these itself (the app's own check: test_serve_asgi_edge.py)."""
    for length in (b"-5", b"abc", b"5\r\nContent-Length: 6"):
        sock = raw_socket(base)
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
        sock.sendall(head + length + b"\r\n\r\n{}")
        reply = sock.recv(4096)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 400") and b"text/plain" in reply, reply
