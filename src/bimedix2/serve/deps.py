"""FastAPI dependencies: the server's state, and the guards every protected route runs.

`GUARDS` (cross-site refusal, API key, body-size limit, in that order) is attached to each
protected router when `routes.include_routes` adds it, so a route cannot be open by accident.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ..engine import Engine
from ..errors import AuthenticationError, PayloadTooLargeError, PermissionDeniedError
from .batcher import Batcher
from .config import ServeConfig


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


async def refuse_cross_site(request: Request) -> None:
    """403 for a request a browser sent from another site (CSRF): such a page must not drive the model.

    Browsers label every request with `Sec-Fetch-Site`; the web chat's own requests are
    `same-origin`, API clients send none. No CORS headers are ever sent, so another site's page
    cannot read a response either.
    """
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise PermissionDeniedError(
            "cross-site browser requests are refused; call the API from a server or this server's own page",
            code="cross_site_request",
        )


async def require_api_key(request: Request, state: State) -> None:
    """401 unless `Authorization: Bearer KEY` matches the configured key (constant-time compare)."""
    key = state.config.api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not (scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())):
        raise AuthenticationError("missing or wrong API key (send 'Authorization: Bearer KEY')")


async def limited_body(request: Request, state: State) -> bytes:
    """The request body; 413 once it is over `max_body_bytes` (by Content-Length, or as chunks arrive)."""
    limit = state.config.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLargeError(
            f"request body is {length} bytes, over the limit of {limit} bytes", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


Body = Annotated[bytes, Depends(limited_body)]
GUARDS = (Depends(refuse_cross_site), Depends(require_api_key), Depends(limited_body))
