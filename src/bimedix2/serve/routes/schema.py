"""GET /openapi.json: the API schema, behind the key like the API it describes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter()


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> dict[str, Any]:
    """FastAPI's generated schema of this app."""
    return request.app.openapi()
