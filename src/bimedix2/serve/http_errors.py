"""Errors -> OpenAI's error JSON, in one place.

Every error the toolkit raises on purpose carries its HTTP status, OpenAI error type, code and
param (`bimedix2.errors`); `describe` reads them, the app's exception handlers and the SSE
stream both use it. Anything else is a 500 whose message is never sent and whose content is
never logged (only the exception's type).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BiMediX2Error, RequestError
from .protocol import error_payload

log = logging.getLogger(__name__)


class UnsupportedMediaTypeError(RequestError):
    """A JSON route was sent a body labelled as something else (415)."""

    http_status = 415
    code = "unsupported_media_type"


class BodyTimeoutError(RequestError):
    """The request body did not arrive within the body timeout (408)."""

    http_status = 408
    code = "body_timeout"


class ClientDisconnectedError(RequestError):
    """The client hung up before its request was read; nobody is left to answer (logged at info, no traceback)."""

    code = "client_disconnected"


class ShuttingDownError(BiMediX2Error):
    """The server stopped waiting for this request: it is shutting down past its grace period (503)."""

    http_status = 503
    openai_type = "server_error"
    code = "shutting_down"
    public = True


INTERNAL_MESSAGE = "internal server error; the request was not completed"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


@dataclass(frozen=True)
class ErrorInfo:
    """What the client is told about one error."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    retry_after_s: int | None = None

    def payload(self, *, with_param: bool = True) -> dict[str, Any]:
        """The OpenAI error body `{"error": {...}}`."""
        return error_payload(self.message, self.type, self.code, self.param if with_param else None)

    def response(self) -> JSONResponse:
        """The error as a JSON response (with `Retry-After` where the error asks for one)."""
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else None
        return JSONResponse(self.payload(), status_code=self.status, headers=headers)


def describe(exc: BaseException) -> ErrorInfo:
    """How `exc` is reported; server faults are logged by type only and their message is withheld."""
    if not isinstance(exc, BiMediX2Error):
        log.error("request failed with %s", type(exc).__name__)  # never the content
        return ErrorInfo(500, "server_error", INTERNAL_MESSAGE)
    public = exc.http_status < 500 or exc.public
    if not public:
        log.error("request failed with %s", type(exc).__name__)
    return ErrorInfo(
        exc.http_status,
        exc.openai_type,
        str(exc) if public else INTERNAL_MESSAGE,
        exc.code,
        exc.param,
        getattr(exc, "retry_after_s", None),
    )


def error_response(exc: BaseException) -> JSONResponse:
    """`describe(exc)` as a JSON response."""
    return describe(exc).response()


# pydantic names a union's branches in `loc` ("str", "list[...]", "tagged-union[...]"); a client never wrote them
_BRANCH = re.compile(r"^(str|int|float|bool|none|[a-z-]+\[.*\])$")


def field_path(loc: Sequence[Any]) -> str:
    """`("messages", 0, "content", "str")` -> `messages[0].content`: the field as the client wrote it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _BRANCH.match(str(part)):
            out += f".{part}" if out else str(part)
    return out


def invalid_request(errors: list[Any], count: int) -> RequestError:
    """A 400 naming the first field pydantic rejected (e.g. `messages[0].content[1]: unknown part type ...`)."""
    first = errors[0]
    loc = field_path(first["loc"])
    if first["type"] == "content_part":  # protocol._check_content: the part index and the path inside it
        loc += f"[{first['ctx']['index']}]{first['ctx']['where']}"
    more = f" (and {count - 1} more problem(s))" if count > 1 else ""
    message = f"{loc}: {first['msg']}{more}" if loc else f"{first['msg']}{more}"
    return RequestError(message, code="invalid_request", param=loc or None)


def from_validation_error(exc: ValidationError) -> RequestError:
    """A pydantic `ValidationError` of a request body as a 400 `RequestError`."""
    return invalid_request(exc.errors(), exc.error_count())


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to OpenAI's shape: toolkit errors, routing errors, validation errors, the rest."""

    async def toolkit_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        info = ErrorInfo(exc.status_code, "invalid_request_error", str(exc.detail), _HTTP_CODES.get(exc.status_code))
        return info.response()

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        return error_response(invalid_request(errors, len(errors)))

    app.add_exception_handler(BiMediX2Error, toolkit_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, toolkit_error)
