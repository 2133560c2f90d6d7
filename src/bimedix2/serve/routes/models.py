"""GET /v1/models and /v1/models/{id}: the one model this server serves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...errors import NotFoundError
from ..deps import State
from ..protocol import ModelCard, ModelList

router = APIRouter()


@router.get("/v1/models")
async def list_models(state: State) -> dict[str, Any]:
    """OpenAI's model list, with this server's model id."""
    return ModelList(data=[ModelCard(id=state.config.model_id, created=state.created)]).model_dump()


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, state: State) -> dict[str, Any]:
    """The model card; 404 for any other id."""
    if model_id != state.config.model_id:
        raise NotFoundError(
            f"model {model_id!r} not found; this server serves {state.config.model_id!r}",
            code="model_not_found",
            param="model",
        )
    return ModelCard(id=state.config.model_id, created=state.created).model_dump()
