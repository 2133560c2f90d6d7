"""GET /health (liveness probe) and GET /api/info (what the web chat needs before it has a key).

Open routes. A stranger (a keyed server, no valid key) learns only that the server is up, that it
needs a key, and the research-use notice; with the key (or on a server without one) they also
tell the model id, vision support and queue counts. Nothing about any request, prompt, image or patient.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...types import RESEARCH_NOTICE, RESEARCH_NOTICE_AR
from ..deps import State, has_valid_key

router = APIRouter()


@router.get("/health")
async def health(request: Request, state: State) -> dict[str, Any]:
    """Liveness; the model id and queue depth only for a caller with the key."""
    if not has_valid_key(request, state.config):
        return {"status": "ok"}
    batcher = state.batcher
    return {"status": "ok", "model": state.config.model_id, "queued": batcher.queued, "running": batcher.running}


@router.get("/api/info")
async def info(request: Request, state: State) -> dict[str, Any]:
    """Whether an API key is required and the research-use notice; model id and vision only with the key."""
    body: dict[str, Any] = {
        "auth": state.config.api_key is not None,
        "notice": {"en": RESEARCH_NOTICE, "ar": RESEARCH_NOTICE_AR},
    }
    if has_valid_key(request, state.config):
        body.update(model=state.config.model_id, vision=state.engine.loaded.has_vision)
    return body
