"""The framework's own HTTP middlewares (Host check, CORS), with their refusals in OpenAI's error shape.

`TrustedHostMiddleware` refuses a Host the server does not answer to (DNS rebinding: a page on
evil.example whose name resolves to 127.0.0.1 still sends `Host: evil.example`); `CORSMiddleware`
answers preflights and adds CORS headers for the origins `--allow-origin` names (none by default).
Both answer refusals in plain text; `OpenAIErrors` rewrites those into `{"error": {...}}` like
every other error of this server, and drops the CORS headers from them (a refusal grants nothing).
The Origin check of requests that need no preflight is `deps.refuse_cross_site`, a guard.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import time

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import ServeConfig
from .http_errors import ErrorInfo

REQUEST_LOG = "bimedix2.serve.requests"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback name or address."""
    if host.lower() in ("localhost", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bracketed(host: str) -> list[str]:
    """Both spellings of an IPv6 literal ("::1" in config, "[::1]" in a Host header)."""
    return [host, f"[{host}]"] if ":" in host and not host.startswith("[") else [host]


def allowed_hosts(config: ServeConfig) -> list[str]:
    """The Host values this server answers to: the bind address, loopback names for a loopback bind, configured ones.

    A wildcard bind (0.0.0.0, ::) answers to this machine's names and addresses as far as it can
    find them; behind a proxy or a container's port mapping, name the public host with `--allowed-host`.
    """
    if "*" in config.allowed_hosts:
        return ["*"]
    hosts = {config.host.lower(), *(h.lower() for h in config.allowed_hosts)}
    if is_loopback(config.host) or config.host in WILDCARD_BINDS:
        hosts.update(LOOPBACK_NAMES)
    if config.host in WILDCARD_BINDS:
        hosts.discard(config.host)
        hosts.update(_this_machine())
    return sorted({spelling for host in hosts if host for spelling in _bracketed(host)})


def _this_machine() -> set[str]:
    """This machine's host names and the addresses they resolve to, plus the outward address (best effort)."""
    found: set[str] = set()
    for name in {socket.gethostname(), socket.getfqdn()}:
        found.add(name.lower())
        try:
            found.update(str(info[4][0]).lower() for info in socket.getaddrinfo(name, None))
        except OSError:
            pass
    for family, probe in ((socket.AF_INET, "10.255.255.255"), (socket.AF_INET6, "fd00::1")):
        try:  # routing a UDP socket finds the outward interface's address; no packet is sent
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect((probe, 1))
                found.add(str(udp.getsockname()[0]).lower())
        except OSError:
            pass
    return found


def _refusal(status: int, text: str, scope: Scope) -> ErrorInfo:
    """A framework middleware's plain-text refusal as an OpenAI error."""
    if text == "Invalid host header":
        host = Headers(scope=scope).get("host", "")[:100]
        return ErrorInfo(
            400,
            "invalid_request_error",
            f"Host {host!r} is not a name this server answers to (a guard against DNS rebinding); "
            f"start it with --allowed-host {host.rsplit(':', 1)[0] if host else 'NAME'} to allow it",
            "invalid_host",
        )
    if text.startswith("Disallowed CORS"):
        what = text.removeprefix("Disallowed CORS ").strip()
        origin = Headers(scope=scope).get("origin", "")[:100]
        return ErrorInfo(
            403,
            "invalid_request_error",
            f"cross-origin request from {origin!r} refused ({what} not allowed); "
            "start the server with --allow-origin ORIGIN to let that site's pages call it",
            "cross_site_request",
        )
    return ErrorInfo(status, "invalid_request_error", text[:200] or "request refused")


class OpenAIErrors:
    """Rewrite plain-text error responses of the middlewares inside it into OpenAI's error JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = b""

        async def reshape(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start":
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if message["status"] >= 400 and content_type.startswith("text/plain"):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                info = _refusal(held["status"], body.decode("utf-8", "replace").strip(), scope)
                response = info.response()
                headers = MutableHeaders(raw=list(response.raw_headers))
                for name, value in Headers(raw=held.get("headers", [])).items():
                    if name not in ("content-type", "content-length") and not name.startswith("access-control-"):
                        headers.append(name, value)
                await send({"type": "http.response.start", "status": info.status, "headers": headers.raw})
                await send({"type": "http.response.body", "body": response.body})
                return
            await send(message)

        await self.app(scope, receive, reshape)


class RequestLog:
    """`--log-requests`: one line per request, `METHOD /path STATUS N ms`: no query string, headers or content."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger(REQUEST_LOG)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            ms = (time.monotonic() - start) * 1000
            self.log.info("%s %s %d %.0f ms", scope["method"], scope["path"], status, ms)


def enable_request_log() -> logging.Logger:
    """The request logger at INFO whatever the global level (-v), with a stderr handler if nothing else prints."""
    log = logging.getLogger(REQUEST_LOG)
    log.setLevel(logging.INFO)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
    return log


def install_middleware(app: FastAPI, config: ServeConfig) -> None:
    """Host check, then CORS (outermost first), their refusals in OpenAI's shape; the request log around them."""
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(config), www_redirect=False)
    app.add_middleware(OpenAIErrors)
    if config.log_requests:
        enable_request_log()
        app.add_middleware(RequestLog)
