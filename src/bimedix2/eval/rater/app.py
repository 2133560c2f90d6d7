"""The local web rater page: `bimedix2 eval rate DIR --rater NAME` serves it on 127.0.0.1.

Static HTML + JS (no other host is ever asked), one pair at a time with both conversations; an
Arabic conversation is shown right to left. `PUT /api/ratings/{pair}` saves a choice at once
(the rater's file is rewritten atomically). Host headers other than loopback names are refused,
so a web page elsewhere cannot reach the server by DNS rebinding.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ...types import RESEARCH_NOTICE, RESEARCH_NOTICE_AR
from .ratings import RatingStore
from .sheet import read_sheet

STATIC = {"rater.js": "text/javascript", "rater.css": "text/css"}


class Choice(BaseModel):
    """A rater's choice for one pair."""

    choice: Literal["A", "B", "tie"]


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def create_rater_app(out: Path, rater: str) -> FastAPI:
    """The rater app for one evaluation folder and one rater."""
    pairs = read_sheet(out)
    store = RatingStore(out, rater, {p["pair"] for p in pairs})
    app = FastAPI(title="BiMediX2 conversation rater", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return _static("index.html")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "not found")
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/api/pairs")
    def get_pairs() -> dict[str, Any]:
        return {
            "rater": store.rater,
            "notice": RESEARCH_NOTICE,
            "notice_ar": RESEARCH_NOTICE_AR,
            "pairs": pairs,
            "ratings": store.choices(),
        }

    @app.put("/api/ratings/{pair}")
    def put_rating(pair: str, body: Choice) -> dict[str, Any]:
        try:
            store.rate(pair, body.choice)
        except KeyError:
            raise HTTPException(404, f"no pair {pair!r} on the sheet") from None
        return {"pair": pair, "choice": body.choice, "rated": len(store.ratings), "total": len(pairs)}

    return app
