"""The FastAPI app: OpenAI-compatible routes, health, the DICOM preview helper and the web chat.

Every user mistake gets a 4xx in OpenAI's error shape; only genuine server faults are 5xx.
Prompts and images are never logged; with `log_requests` only sizes, counts and timings are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import Engine
from ..errors import BiMediX2Error, ContextTooLongError, ConversationError, ImageError, NoVisionError
from ..types import RESEARCH_NOTICE, RESEARCH_NOTICE_AR, ImageRef, Reply
from .batcher import Batcher, Job, QueueFullError
from .config import ServeConfig
from .convert import RequestError, to_gen_params, to_messages
from .protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    ResponseMessage,
    Usage,
    error_payload,
    new_id,
)

log = logging.getLogger(__name__)
WEB_DIR = resources.files("bimedix2.serve") / "web"


class TimedOut(Exception):
    """The request ran past `request_timeout_s`."""


def error_response(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error in OpenAI's shape."""
    return JSONResponse(error_payload(message, type_, code, param), status_code=status, headers=headers)


def classify(exc: BaseException) -> tuple[int, str, str | None, str | None]:
    """(status, type, code, param) for an exception raised while handling a request."""
    if isinstance(exc, RequestError):
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return exc.status, kind, exc.code, exc.param
    if isinstance(exc, ContextTooLongError):
        return 400, "invalid_request_error", "context_length_exceeded", "messages"
    if isinstance(exc, ImageError):
        return 400, "invalid_request_error", "invalid_image", "messages"
    if isinstance(exc, ConversationError):
        return 400, "invalid_request_error", "invalid_conversation", "messages"
    if isinstance(exc, NoVisionError):
        return 422, "invalid_request_error", "model_has_no_vision", "messages"
    if isinstance(exc, QueueFullError):
        return 429, "rate_limit_error", "queue_full", None
    if isinstance(exc, TimedOut):
        return 504, "timeout_error", "timeout", None
    return 500, "server_error", None, None


def _message(exc: BaseException, status: int) -> str:
    if status >= 500 and not isinstance(exc, (TimedOut, RequestError)):
        return "internal server error; the request was not completed"
    return str(exc)


def exception_response(exc: BaseException) -> JSONResponse:
    status, kind, code, param = classify(exc)
    if status >= 500 and not isinstance(exc, TimedOut):
        log.error("request failed with %s", type(exc).__name__)  # never the content
    headers = {"Retry-After": "1"} if status == 429 else None
    return error_response(status, _message(exc, status), kind, code, param, headers)


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    return f"{loc}: {first['msg']}{more}" if loc else f"{first['msg']}{more}", loc or None


def create_app(engine: Engine, config: ServeConfig | None = None) -> FastAPI:
    """The server app; the batcher starts and stops with the app's lifespan."""
    config = config or ServeConfig()
    batcher = Batcher(
        engine, max_batch_size=config.max_batch_size, max_queue=config.max_queue, batch_window_s=config.batch_window_s
    )
    created = config.created or int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(title="BiMediX2 (research use only)", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    app.state.config = config

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error", code)

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception) -> JSONResponse:
        return exception_response(exc)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/v1"):
            if config.api_key is not None and not _authorized(request, config.api_key):
                return error_response(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                                      "invalid_request_error", "invalid_api_key")
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
                return error_response(413, f"request body is {length} bytes, over the limit of "
                                      f"{config.max_body_bytes} bytes", "invalid_request_error", "request_too_large")
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": config.model_id, "queued": batcher.queued, "running": batcher.running}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return ModelList(data=[ModelCard(id=config.model_id, created=created)]).model_dump()

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> Response:
        if model_id != config.model_id:
            return error_response(404, f"model {model_id!r} not found; this server serves {config.model_id!r}",
                                  "invalid_request_error", "model_not_found", "model")
        return JSONResponse(ModelCard(id=config.model_id, created=created).model_dump())

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            body = await _read_body(request, config.max_body_bytes)
            try:
                req = ChatCompletionRequest.model_validate_json(body)
            except ValidationError as exc:
                message, param = _validation_message(exc)
                return error_response(400, message, "invalid_request_error", "invalid_request", param)
            if req.model != config.model_id:
                return error_response(404, f"model {req.model!r} not found; this server serves {config.model_id!r}",
                                      "invalid_request_error", "model_not_found", "model")
            messages = to_messages(req, config)
            params = to_gen_params(req, config)
            job = batcher.submit(messages, params)
        except (RequestError, BiMediX2Error, QueueFullError) as exc:
            return exception_response(exc)
        deadline = job.arrived + config.request_timeout_s
        if config.log_requests:
            log.info("chat request: %d message(s), %d image(s), stream=%s",
                     len(messages), sum(len(m.images) for m in messages), req.stream)
        try:
            kind, value = await _next_event(job, deadline, request)
        except (TimedOut, ConnectionAbortedError) as exc:
            job.cancel()
            return exception_response(exc if isinstance(exc, TimedOut) else TimedOut("client went away"))
        if kind == "error":
            return exception_response(value)  # type: ignore[arg-type]
        completion_id, created_at = new_id(), int(time.time())
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                _sse(job, deadline, completion_id, created_at, config.model_id, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            reply = await _collect(job, deadline, request)
        except (TimedOut, ConnectionAbortedError) as exc:
            job.cancel()
            return exception_response(exc if isinstance(exc, TimedOut) else TimedOut("client went away"))
        except Exception as exc:
            return exception_response(exc)
        completion = ChatCompletion(
            id=completion_id,
            created=created_at,
            model=config.model_id,
            choices=[Choice(message=ResponseMessage(content=reply.text), finish_reason=reply.finish_reason)],
            usage=_usage(reply),
        )
        return JSONResponse(completion.model_dump())

    @app.post("/v1/bimedix2/preview")
    async def preview(request: Request) -> Response:
        """PNG preview of an uploaded image (the web chat uses it for DICOM, which browsers cannot show)."""
        try:
            body = await _read_body(request, config.max_body_bytes)
        except RequestError as exc:
            return exception_response(exc)
        if len(body) > config.max_image_bytes:
            return error_response(413, f"image is {len(body)} bytes, over the limit of {config.max_image_bytes}",
                                  "invalid_request_error", "image_too_large")
        try:
            png = await asyncio.to_thread(_preview_png, body, engine)
        except ImageError as exc:
            return exception_response(exc)
        return Response(png, media_type="image/png")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return {
            "model": config.model_id,
            "vision": engine.loaded.has_vision,
            "auth": config.api_key is not None,
            "notice": {"en": RESEARCH_NOTICE, "ar": RESEARCH_NOTICE_AR},
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(WEB_DIR / "index.html"), media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(WEB_DIR)), name="static")
    return app


def _authorized(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) once more than `limit` bytes arrive (chunked bodies included)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body is over the limit of {limit} bytes", status=413, code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _next_event(job: Job, deadline: float, request: Request | None = None) -> tuple[str, object]:
    """The job's next event; raises TimedOut past the deadline, ConnectionAbortedError if the client left."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimedOut("the request timed out before the reply was complete; try fewer max_tokens")
        try:
            return await asyncio.wait_for(job.events.get(), timeout=min(remaining, 0.5))
        except asyncio.TimeoutError:
            if request is not None and await request.is_disconnected():
                raise ConnectionAbortedError from None


async def _collect(job: Job, deadline: float, request: Request) -> Reply:
    while True:
        kind, value = await _next_event(job, deadline, request)
        if kind == "done":
            return value  # type: ignore[return-value]
        if kind == "error":
            raise value  # type: ignore[misc]


def _usage(reply: Reply) -> Usage:
    return Usage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        total_tokens=reply.prompt_tokens + reply.completion_tokens,
    )


async def _sse(
    job: Job, deadline: float, cid: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format; the job is cancelled if the client goes away."""

    def chunk(delta: Delta, finish: str | None = None, usage: Usage | None = None, empty: bool = False) -> str:
        choices = [] if empty else [ChunkChoice(delta=delta, finish_reason=finish)]  # type: ignore[arg-type]
        body = ChatCompletionChunk(id=cid, created=created, model=model, choices=choices, usage=usage)
        return f"data: {json.dumps(body.model_dump(exclude_none=not empty), ensure_ascii=False)}\n\n"

    finished = False
    try:
        yield chunk(Delta(role="assistant", content=""))
        while True:
            try:
                kind, value = await _next_event(job, deadline)
            except TimedOut as exc:
                yield f"data: {json.dumps(error_payload(str(exc), 'timeout_error', 'timeout'))}\n\n"
                return
            if kind == "text":
                yield chunk(Delta(content=value))  # type: ignore[arg-type]
            elif kind == "done":
                reply: Reply = value  # type: ignore[assignment]
                finished = True
                yield chunk(Delta(), finish=reply.finish_reason)
                if include_usage:
                    yield chunk(Delta(), usage=_usage(reply), empty=True)
                yield "data: [DONE]\n\n"
                return
            elif kind == "error":
                status, kind_, code, _ = classify(value)  # type: ignore[arg-type]
                message = _message(value, status)  # type: ignore[arg-type]
                yield f"data: {json.dumps(error_payload(message, kind_, code), ensure_ascii=False)}\n\n"
                return
    finally:
        if not finished:
            job.cancel()


def _preview_png(data: bytes, engine: Engine) -> bytes:
    from ..images import load_image

    image = load_image(ImageRef(data, "upload"), engine.limits)
    image.thumbnail((768, 768))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
