"""Every route's guards, found by walking the app: API key, body-size limit, cross-site refusal, no CORS.

(Host checks, Content-Type and the CORS middleware's refusals: test_serve_hostile.py.)

A route that is not on OPEN_ROUTES must refuse a request without the key; a new route fails
`test_every_route_is_classified` until it is either protected or added here on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from bimedix2.engine import Engine
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig

pytestmark = pytest.mark.integration
MODEL = "bimedix2-tiny"
KEY = "s3cret-key"
LIMIT = 100_000
# Open on purpose: they reveal nothing about requests, prompts, images or patients.
OPEN_ROUTES = {
    ("GET", "/health"),  # liveness probe: status only (model id and queue counts with the key)
    ("GET", "/api/info"),  # web chat bootstrap: whether a key is needed, the notice (model id, vision with the key)
    ("GET", "/"),  # the web chat page
    ("GET", "/static"),  # the page's scripts and styles
}
PROTECTED_ROUTES = {
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id:path}"),
    ("POST", "/v1/bimedix2/preview"),
    ("GET", "/openapi.json"),  # the API schema (names the routes and fields)
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, however this FastAPI version stores included routers."""
    try:
        from fastapi.routing import iter_route_contexts  # newer FastAPI keeps included routers nested
    except ImportError:
        routes: list = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    found = set()
    for route in routes:
        methods = getattr(route, "methods", None) or {"GET"}  # a mount (static files) answers GET
        found.update((m, route.path) for m in methods if m != "HEAD")
    return found


def url(base: str, path: str) -> str:
    return base + re.sub(r"\{[^}]+\}", MODEL, path)


@pytest.fixture(scope="module")
def guarded(tiny_engine: Engine) -> Iterator[tuple[str, FastAPI]]:
    app = create_app(tiny_engine, ServeConfig(model_id=MODEL, api_key=KEY, max_body_bytes=LIMIT))
    with serve_in_thread(app) as base:
        yield base, app


def ok_body(method: str, path: str, png_path: Path) -> dict[str, object]:
    """A request each protected route answers with 200 when the key is right."""
    if path == "/v1/chat/completions":
        return {"json": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}}
    if path == "/v1/bimedix2/preview":
        return {"content": png_path.read_bytes()}
    return {}


def test_every_route_is_classified(guarded: tuple[str, FastAPI]) -> None:
    _, app = guarded
    routes = app_routes(app)
    assert PROTECTED_ROUTES <= routes, "the route walk missed known routes"
    unclassified = routes - OPEN_ROUTES - PROTECTED_ROUTES
    assert not unclassified, f"new route(s) {unclassified}: protect them (routes.PROTECTED) or allow-list them here"


def test_every_route_but_the_open_ones_needs_the_key(guarded: tuple[str, FastAPI], png_path: Path) -> None:
    base, app = guarded
    for method, path in sorted(app_routes(app) - OPEN_ROUTES):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}):
            r = httpx.request(method, url(base, path), headers=headers, timeout=60, **ok_body(method, path, png_path))
            assert r.status_code == 401, (method, path, headers, r.text)
            error = r.json()["error"]
            assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key", r.text
        good = {"Authorization": f"Bearer {KEY}"}
        r = httpx.request(method, url(base, path), headers=good, timeout=60, **ok_body(method, path, png_path))
        assert r.status_code == 200, (method, path, r.text)
    for method, path in OPEN_ROUTES:
        target = url(base, path) + ("/app.js" if path == "/static" else "")
        assert httpx.request(method, target, timeout=60).status_code == 200, path


def test_body_limit_on_every_protected_route(guarded: tuple[str, FastAPI]) -> None:
    base, app = guarded
    good = {"Authorization": f"Bearer {KEY}"}
    for method, path in sorted(app_routes(app) - OPEN_ROUTES):
        sized = httpx.request(method, url(base, path), headers=good, content=b"x" * (LIMIT + 1), timeout=60)
        chunked = httpx.request(method, url(base, path), headers=good, content=iter([b" " * 60_000] * 2), timeout=60)
        for r in (sized, chunked):
            assert r.status_code == 413, (method, path, r.text)
            assert r.json()["error"]["code"] == "request_too_large"
        assert "content-length" not in chunked.request.headers  # really chunked
        # the key is checked first: no key and a huge body is a 401, the body is not read
        assert httpx.request(method, url(base, path), content=b"x" * (LIMIT + 1), timeout=60).status_code == 401


def test_cross_site_browser_requests_are_refused_and_no_cors(guarded: tuple[str, FastAPI], png_path: Path) -> None:
    base, app = guarded
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Authorization": f"Bearer {KEY}"}
    for method, path in sorted(app_routes(app) - OPEN_ROUTES):
        r = httpx.request(method, url(base, path), headers=evil, timeout=60, **ok_body(method, path, png_path))
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site_request", (path, r.text)
        same = {**evil, "Origin": base, "Sec-Fetch-Site": "same-origin"}
        r = httpx.request(method, url(base, path), headers=same, timeout=60, **ok_body(method, path, png_path))
        assert r.status_code == 200, (path, r.text)
        preflight = httpx.options(
            url(base, path),
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": method},
        )
        assert preflight.status_code != 200
        for response in (r, preflight):
            assert not any(h.startswith("access-control-") for h in response.headers), response.headers


def test_open_routes_reveal_no_request_content(guarded: tuple[str, FastAPI]) -> None:
    base, _ = guarded
    prompt = "Patient Jane Qwertyuiop, MRN 99887766, chest pain"
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 2}
    assert httpx.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}).is_success
    health = httpx.get(f"{base}/health").json()
    assert health == {"status": "ok"}  # a stranger: status only
    info = httpx.get(f"{base}/api/info").json()
    assert set(info) == {"auth", "notice"} and info["auth"] is True
    key = {"Authorization": f"Bearer {KEY}"}
    assert set(httpx.get(f"{base}/health", headers=key).json()) == {"status", "model", "queued", "running"}
    assert set(httpx.get(f"{base}/api/info", headers=key).json()) == {"model", "vision", "auth", "notice"}
    for path, headers in (("/health", key), ("/api/info", key), ("/", {}), ("/openapi.json", key)):
        text = httpx.get(base + path, headers=headers).text
        assert "Qwertyuiop" not in text and "99887766" not in text and KEY not in text, path


def test_without_a_key_configured_every_route_is_reachable(tiny_engine: Engine, png_path: Path) -> None:
    app = create_app(tiny_engine, ServeConfig(model_id=MODEL))
    with serve_in_thread(app) as base:
        for method, path in sorted(PROTECTED_ROUTES):
            r = httpx.request(method, url(base, path), timeout=60, **ok_body(method, path, png_path))
            assert r.status_code == 200, (path, r.text)


def test_every_route_refuses_a_foreign_host_and_text_plain_json(guarded: tuple[str, FastAPI], png_path: Path) -> None:
    """DNS rebinding and no-preflight bodies, on every route the walk finds (test_serve_hostile.py has the rest)."""
    base, app = guarded
    good = {"Authorization": f"Bearer {KEY}"}
    for method, path in sorted(app_routes(app)):
        target = url(base, path) + ("/app.js" if path == "/static" else "")
        r = httpx.request(method, target, headers={**good, "Host": "evil.example"}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host", (method, path, r.text)
    r = httpx.post(
        f"{base}/v1/chat/completions",
        content=b'{"model": "bimedix2-tiny", "messages": [{"role": "user", "content": "hi"}]}',
        headers={**good, "Content-Type": "text/plain"},
    )
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text
