"""FastAPI dependencies: the server's state, and the guards every protected route runs.

`GUARDS` (cross-site refusal, API key, body-size limit, in that order) is attached to each
protected router when `routes.include_routes` adds it, so a route cannot be open by accident.
JSON routes take `JsonBody` (415 unless the body is labelled `application/json`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from ..engine import Engine
from ..errors import AuthenticationError, PayloadTooLargeError, PermissionDeniedError, RequestError
from .batcher import Batcher
from .config import ServeConfig
from .http_errors import BodyTimeoutError, ClientDisconnectedError, ShuttingDownError, UnsupportedMediaTypeError

log = logging.getLogger(__name__)
CROSS_SITE_MESSAGE = (
    "cross-origin browser requests are refused; call the API from a server or this server's own page "
    "(or start it with --allow-origin ORIGIN for that site)"
)
_DIGITS = re.compile(r"[0-9]+")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True)
class ServerState:
    """What the routes share: the engine, its batcher and the settings."""

    engine: Engine
    batcher: Batcher
    config: ServeConfig
    created: int  # the model card's `created` time


def server_state(request: Request) -> ServerState:
    """The app's `ServerState` (set by `create_app`)."""
    return request.app.state.server


State = Annotated[ServerState, Depends(server_state)]


def _netloc(scheme: str, netloc: str) -> str:
    """`host:port` with the scheme's default port spelled out, lower-case (for comparing origins)."""
    host, sep, port = netloc.lower().rpartition(":")
    if not sep or "]" in port:  # no port (an IPv6 literal's colons are inside brackets)
        return f"{netloc.lower()}:{_DEFAULT_PORTS.get(scheme, '')}"
    return f"{host}:{port}"


def same_origin(origin: str, request: Request) -> bool:
    """Whether a browser's `Origin` is this server as the request reached it (its validated Host header)."""
    parts = urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False  # "null" (sandboxed frames, file: pages) and anything else unparseable
    host = request.headers.get("host", "")
    return _netloc(parts.scheme, parts.netloc) == _netloc(parts.scheme, host)


async def refuse_cross_site(request: Request, state: State) -> None:
    """403 for a request a browser sent from another origin (CSRF): such a page must not drive the model.

    Browsers send `Origin` with every POST and every cross-origin fetch; the web chat is served by
    this server, so its `Origin` is this server's own. API clients (the SDK, curl) send none.
    Origins named by `--allow-origin` pass (CORS headers for them come from `CORSMiddleware`).
    `Sec-Fetch-Site: cross-site` without an Origin is refused too.
    """
    allowed = state.config.allowed_origins
    origin = request.headers.get("origin")
    if origin is not None and ("*" in allowed or origin in allowed):
        return
    if origin is not None and not same_origin(origin, request):
        raise PermissionDeniedError(CROSS_SITE_MESSAGE, code="cross_site_request")
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise PermissionDeniedError(CROSS_SITE_MESSAGE, code="cross_site_request")


def has_valid_key(request: Request, config: ServeConfig) -> bool:
    """Whether the request may see everything: no key is configured, or `Authorization: Bearer KEY` matches."""
    key = config.api_key
    if key is None:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def require_api_key(request: Request, state: State) -> None:
    """401 unless `Authorization: Bearer KEY` matches the configured key (constant-time compare)."""
    if not has_valid_key(request, state.config):
        raise AuthenticationError("missing or wrong API key (send 'Authorization: Bearer KEY')")


async def limited_body(request: Request, state: State) -> bytes:
    """The request body; 413 once it is over `max_body_bytes` (by Content-Length, or as chunks arrive).

    The whole body must arrive within `body_timeout_s` (408 otherwise), so a client that sends
    half a body and stalls does not hold the request forever. A client that hangs up mid-body
    is a client event, logged at info without a traceback.
    """
    config = state.config
    limit = config.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None and not _DIGITS.fullmatch(length):  # uvicorn (h11) answers these itself; others may not
        raise RequestError(
            f"Content-Length header {length[:20]!r} is not a whole number of bytes",
            code="invalid_content_length",
            param=None,
        )
    if length is not None and (len(length) > 18 or int(length) > limit):
        raise PayloadTooLargeError(
            f"request body is {length[:20]} bytes, over the limit of {limit} bytes", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(config.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(
                        f"request body is over the limit of {limit} bytes", code="request_too_large"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeoutError(
            f"the request body did not arrive within {config.body_timeout_s:g} s ({size} bytes received)"
        ) from None
    except asyncio.CancelledError:  # uvicorn cancels what is left after --shutdown-grace-s: answer, no traceback
        log.info("shutting down: a request body was still arriving (%d bytes received)", size)
        raise ShuttingDownError("the server is shutting down; retry against another instance or later") from None
    except ClientDisconnect:
        log.info("client disconnected before its request body was complete (%d bytes received)", size)
        raise ClientDisconnectedError("the client disconnected before the request body was complete") from None
    return b"".join(chunks)


Body = Annotated[bytes, Depends(limited_body)]


async def json_body(request: Request, body: Body) -> bytes:
    """The body of a JSON route; 415 unless it is labelled `Content-Type: application/json`.

    Browsers send `text/plain`, form and multipart bodies cross-origin without a preflight; a JSON
    API that parsed them anyway would let any page post to it.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaTypeError(
            f"Content-Type is {media_type or 'missing'}; send the body as JSON with 'Content-Type: application/json'"
        )
    return body


JsonBody = Annotated[bytes, Depends(json_body)]
GUARDS = (Depends(refuse_cross_site), Depends(require_api_key), Depends(limited_body))
