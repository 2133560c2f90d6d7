"""The FastAPI app: OpenAI-compatible routes, health, the DICOM preview helper and the web chat.

Routes live in `serve.routes` (one module per feature) and reach the engine, batcher and
settings through `deps.State`. Every user mistake gets a 4xx in OpenAI's error shape; only
genuine server faults are 5xx (`serve.http_errors`). Prompts and images are never logged;
with `log_requests` only sizes, counts and timings are.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ..engine import Engine
from .batcher import Batcher
from .config import ServeConfig
from .deps import ServerState
from .http_errors import install_error_handlers
from .middleware import install_middleware
from .routes import include_routes


def create_app(engine: Engine, config: ServeConfig | None = None) -> FastAPI:
    """The server app; the batcher starts and stops with the app's lifespan."""
    config = config or ServeConfig()
    batcher = Batcher(
        engine,
        max_batch_size=config.max_batch_size,
        max_queue=config.max_queue,
        batch_window_s=config.batch_window_s,
        scheduler=config.scheduler,
    )
    state = ServerState(engine=engine, batcher=batcher, config=config, created=config.created or int(time.time()))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    # the schema is served by routes.schema, behind the key (FastAPI's own /openapi.json would be open)
    app = FastAPI(
        title="BiMediX2 (research use only)", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.server = state
    app.state.batcher = batcher  # for tests and benchmarks (queue counters, stats)
    app.state.config = config
    install_error_handlers(app)
    include_routes(app)
    install_middleware(app, config)
    return app
