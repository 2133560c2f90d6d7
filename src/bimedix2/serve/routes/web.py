"""The web chat: GET / and the static files under /static (plain HTML/JS/CSS shipped in the package)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter()
WEB_DIR = resources.files("bimedix2.serve") / "web"


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The chat page."""
    return FileResponse(str(WEB_DIR / "index.html"), media_type="text/html; charset=utf-8")


def static_files() -> StaticFiles:
    """The page's scripts and styles, mounted at /static."""
    return StaticFiles(directory=str(WEB_DIR))
