"""The API's routers, one module per feature, and the one place that adds them to an app.

A router is either PROTECTED (it can reach the model or patient data: every route of it gets
`deps.GUARDS` - cross-site refusal, API key, body-size limit - when it is included) or OPEN
(it must reveal nothing about requests, prompts, images or patients). Adding a route: see
docs/architecture.md; tests/integration/test_serve_auth.py fails until a new open route is
added to its allow-list.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from ..deps import GUARDS
from . import chat, health, models, preview, schema, web

PROTECTED: tuple[APIRouter, ...] = (chat.router, models.router, preview.router, schema.router)
OPEN: tuple[APIRouter, ...] = (health.router, web.router)
STATIC_PATH = "/static"  # open: the web chat's own files


def include_routes(app: FastAPI) -> None:
    """Add every router to `app`, the protected ones behind `GUARDS`."""
    for router in PROTECTED:
        app.include_router(router, dependencies=list(GUARDS))
    for router in OPEN:
        app.include_router(router)
    app.mount(STATIC_PATH, web.static_files(), name="static")
