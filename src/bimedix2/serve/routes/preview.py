"""POST /v1/bimedix2/preview: raw image bytes in, a PNG preview out (the web chat shows DICOM with it)."""

from __future__ import annotations

import asyncio
import io

from fastapi import APIRouter
from fastapi.responses import Response

from ...engine import Engine
from ...errors import PayloadTooLargeError
from ...types import ImageRef
from ..deps import Body, State

router = APIRouter()


@router.post("/v1/bimedix2/preview")
async def preview(state: State, body: Body) -> Response:
    """A PNG of at most 768x768; 413 over the per-image limit, 400 for an unreadable image."""
    limit = state.config.max_image_bytes
    if len(body) > limit:
        raise PayloadTooLargeError(f"image is {len(body)} bytes, over the limit of {limit}", code="image_too_large")
    png = await asyncio.to_thread(_preview_png, body, state.engine)
    return Response(png, media_type="image/png")


def _preview_png(data: bytes, engine: Engine) -> bytes:
    from ...images import load_image

    image = load_image(ImageRef(data, "upload"), engine.limits)
    image.thumbnail((768, 768))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
