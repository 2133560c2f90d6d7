"""Errors raised at the toolkit's boundaries.

Every error names what was wrong (a path, a field, a sample id) so a user can fix it
without reading a traceback. They never carry patient data (image pixels, DICOM tags).

Each class also says how the API server reports it (`http_status`, `openai_type`, and the
error body's default `code` and `param`); `bimedix2.serve.http_errors` maps them to OpenAI's
error JSON in one place. A status of 500 means a server fault: its message is not sent.
"""

from __future__ import annotations

from typing import ClassVar


class BiMediX2Error(Exception):
    """Base class of every error this toolkit raises on purpose."""

    http_status: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"
    public: ClassVar[bool] = False  # send the message even with a 5xx status (4xx messages always are)
    code: str | None = None
    param: str | None = None


class ImageError(BiMediX2Error, ValueError):
    """An image could not be read, or breaks a configured limit."""

    http_status = 400
    openai_type = "invalid_request_error"
    code = "invalid_image"
    param = "messages"


class ConversationError(BiMediX2Error, ValueError):
    """A conversation is malformed (empty message, wrong roles, misplaced images)."""

    http_status = 400
    openai_type = "invalid_request_error"
    code = "invalid_conversation"
    param = "messages"


class ModelLoadError(BiMediX2Error):
    """A checkpoint could not be found, recognised or loaded."""


class NoVisionError(BiMediX2Error):
    """Images were given to a model that has no vision encoder."""

    http_status = 422
    openai_type = "invalid_request_error"
    code = "model_has_no_vision"
    param = "messages"


class ContextTooLongError(BiMediX2Error, ValueError):
    """The prompt does not fit the model's context window."""

    http_status = 400
    openai_type = "invalid_request_error"
    code = "context_length_exceeded"
    param = "messages"


class ImageTokenMismatchError(BiMediX2Error, ValueError):
    """The number of image placeholder tokens does not match the image features."""


class ConfigError(BiMediX2Error, ValueError):
    """A configuration file or override is invalid."""


class LLMError(BiMediX2Error):
    """An OpenAI-compatible endpoint failed, refused the request, or gave an unusable reply."""


class EvalDataError(BiMediX2Error, ValueError):
    """An evaluation dataset, task file or results file is missing or malformed; names the path to provide."""


class RecordError(BiMediX2Error, ValueError):
    """A data file or record is malformed, or cannot be trained on; the message names the file:line and record id.

    The one error of the LLaVA / BiMed-V record format and of the data pipeline that reads and writes it.
    """


class TrainingError(BiMediX2Error):
    """A training run cannot start or continue (hardware, checkpoint, configuration mismatch)."""


class RequestError(BiMediX2Error, ValueError):
    """An API request the server refuses (400); `code` and `param` go into the error body."""

    http_status = 400
    openai_type = "invalid_request_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if param is not None:
            self.param = param


class AuthenticationError(RequestError):
    """The API key is missing or wrong (401)."""

    http_status = 401
    code = "invalid_api_key"


class PermissionDeniedError(RequestError):
    """The request asks for something this server does not allow (403), e.g. a file outside the allowed dirs."""

    http_status = 403


class NotFoundError(RequestError):
    """An unknown model id or resource (404)."""

    http_status = 404


class PayloadTooLargeError(RequestError):
    """A request body or an image is over the configured limit (413)."""

    http_status = 413


class ServerBusyError(BiMediX2Error):
    """The request queue is full (429); the client should retry after `retry_after_s`."""

    http_status = 429
    openai_type = "rate_limit_error"
    code = "queue_full"
    retry_after_s: ClassVar[int] = 1


class RequestTimeoutError(BiMediX2Error, TimeoutError):
    """The request ran past the server's timeout (504); its message is safe to send."""

    http_status = 504
    openai_type = "timeout_error"
    code = "timeout"
    public = True
