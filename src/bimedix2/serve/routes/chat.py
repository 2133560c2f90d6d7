"""POST /v1/chat/completions: OpenAI's chat completions, streamed (SSE) or whole, through the batcher."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from ...errors import NotFoundError, RequestTimeoutError, ServerBusyError
from ...types import GenParams, Message, Reply
from ..batcher import Batcher, Job, QueueFullError
from ..config import ServeConfig
from ..convert import to_gen_params, to_messages
from ..deps import JsonBody, State
from ..http_errors import ClientDisconnectedError, ShuttingDownError, describe, error_response, from_validation_error
from ..middleware import REQUEST_LOG
from ..protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
    new_id,
)

log = logging.getLogger(__name__)
request_log = logging.getLogger(REQUEST_LOG)  # --log-requests: counts only, never content
router = APIRouter()
TIMEOUT_MESSAGE = "the request timed out before the reply was complete; try fewer max_tokens"


class _ClientGone(Exception):
    """The HTTP client disconnected while waiting."""


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, state: State, body: JsonBody) -> Response:
    """A completion for one conversation; 4xx in OpenAI's shape for every request mistake."""
    config = state.config
    req = parse_request(body, config)
    messages = to_messages(req, config)
    job = _submit(state.batcher, messages, to_gen_params(req, config))
    if config.log_requests:
        request_log.info(
            "chat request: %d message(s), %d image(s), stream=%s",
            len(messages),
            sum(len(m.images) for m in messages),
            req.stream,
        )
    deadline = job.arrived + config.request_timeout_s
    watcher = asyncio.create_task(_watch_disconnect(request, state.batcher, job))
    try:
        kind, value = await _next_event(job, deadline)
        if kind == "error":
            return error_response(value)  # type: ignore[arg-type]
        completion_id, created = new_id(), int(time.time())
        if req.stream:
            # the streaming response watches for the hang-up itself (and cancels through _sse's finally)
            watcher.cancel()
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                _sse(job, deadline, completion_id, created, config.model_id, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        result = await _collect(job, deadline)
    except RequestTimeoutError as exc:
        state.batcher.cancel(job)
        return error_response(exc)
    except _ClientGone:
        log.info("client disconnected before its reply; generation cancelled")
        return error_response(ClientDisconnectedError("client went away"))
    except asyncio.CancelledError:  # the server is shutting down past --shutdown-grace-s: stop, answer 503
        state.batcher.cancel(job)
        return error_response(ShuttingDownError("the server is shutting down; the reply was not completed"))
    finally:
        watcher.cancel()
    if not isinstance(result, Reply):
        return error_response(result)
    completion = ChatCompletion(
        id=completion_id,
        created=created,
        model=config.model_id,
        choices=[Choice(message=ResponseMessage(content=result.text), finish_reason=result.finish_reason)],
        usage=_usage(result),
    )
    return JSONResponse(completion.model_dump())


async def _watch_disconnect(request: Request, batcher: Batcher, job: Job) -> None:
    """Wait for the client to hang up (the body is read: the next ASGI message is the disconnect), then cancel.

    Runs for every request while it is queued or generating, so a client that leaves stops its
    generation at the next token, or leaves the queue at once, streaming or not.
    """
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            batcher.cancel(job)
            job.events.put_nowait(("gone", None))
            return


def parse_request(body: bytes, config: ServeConfig) -> ChatCompletionRequest:
    """The validated request; 400 naming the first bad field, 404 for another model id."""
    try:
        req = ChatCompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    if req.model != config.model_id:
        raise NotFoundError(
            f"model {req.model!r} not found; this server serves {config.model_id!r}",
            code="model_not_found",
            param="model",
        )
    return req


def _submit(batcher: Batcher, messages: Sequence[Message], params: GenParams) -> Job:
    try:
        return batcher.submit(messages, params)
    except QueueFullError as exc:
        raise ServerBusyError(str(exc)) from None


async def _next_event(job: Job, deadline: float) -> tuple[str, object]:
    """The job's next event; `RequestTimeoutError` past the deadline, `_ClientGone` once the client left."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RequestTimeoutError(TIMEOUT_MESSAGE)
    try:
        kind, value = await asyncio.wait_for(job.events.get(), timeout=remaining)
    except asyncio.TimeoutError:
        raise RequestTimeoutError(TIMEOUT_MESSAGE) from None
    if kind == "gone":
        raise _ClientGone
    return kind, value


async def _collect(job: Job, deadline: float) -> Reply | BaseException:
    """The finished reply, or the exception the job failed with."""
    while True:
        kind, value = await _next_event(job, deadline)
        if kind == "done":
            return value  # type: ignore[return-value]
        if kind == "error":
            return value  # type: ignore[return-value]


def _usage(reply: Reply) -> Usage:
    return Usage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        total_tokens=reply.prompt_tokens + reply.completion_tokens,
    )


def _event(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(
    job: Job, deadline: float, cid: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format; the job is cancelled if the client goes away."""

    def chunk(delta: Delta, finish: str | None = None, usage: Usage | None = None, empty: bool = False) -> str:
        choices = [] if empty else [ChunkChoice(delta=delta, finish_reason=finish)]  # type: ignore[arg-type]
        body = ChatCompletionChunk(id=cid, created=created, model=model, choices=choices, usage=usage)
        return _event(body.model_dump(exclude_none=not empty))

    finished = False
    try:
        yield chunk(Delta(role="assistant", content=""))
        while True:
            try:
                kind, value = await _next_event(job, deadline)
            except RequestTimeoutError as exc:
                yield _event(describe(exc).payload(with_param=False))
                return
            except _ClientGone:  # hung up just as the stream started (the watcher saw it first)
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
                yield _event(describe(value).payload(with_param=False))  # type: ignore[arg-type]
                return
    finally:
        if not finished:
            job.cancel()
