"""GET /health (liveness probe) and GET /api/info (what the web chat needs before it has a key).

Open routes: they tell the model id, queue counts and whether a key is needed, nothing about
any request, prompt, image or patient.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...types import RESEARCH_NOTICE, RESEARCH_NOTICE_AR
from ..deps import State

router = APIRouter()


@router.get("/health")
async def health(state: State) -> dict[str, Any]:
    """Liveness and queue depth."""
    batcher = state.batcher
    return {"status": "ok", "model": state.config.model_id, "queued": batcher.queued, "running": batcher.running}


@router.get("/api/info")
async def info(state: State) -> dict[str, Any]:
    """Model id, vision support, whether an API key is required, and the research-use notice."""
    return {
        "model": state.config.model_id,
        "vision": state.engine.loaded.has_vision,
        "auth": state.config.api_key is not None,
        "notice": {"en": RESEARCH_NOTICE, "ar": RESEARCH_NOTICE_AR},
    }
