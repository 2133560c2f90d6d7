"""OpenAI chat-completions wire format (pydantic, the HTTP edge only).

Requests are validated here and turned into the toolkit's frozen dataclasses by
`bimedix2.serve.convert`; nothing past the API layer sees these models.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ..dicom.decode import parse_window
from ..errors import ImageError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # OpenAI's integer fields are int64 (and strict: `true` is no 1)
MAX_TOKENS_LIMIT = 2**31 - 1  # far past any context length; bigger numbers are a mistake, not a request
PART_TYPES = "'text' or 'image_url'"


class _Strict(BaseModel):
    """Unknown fields are an error naming the field, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ImageURL(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


WINDOW_HINT = 'a preset name such as "lung", "CENTRE,WIDTH" such as "40,400", or [centre, width]'
_WINDOW_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 64},
        {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        {"type": "null"},
    ]
}


class DicomOptions(_Strict):
    """How to render one DICOM image (bimedix2 extension, `"dicom"` on an `image_url` part).

    Each field set here overrides the request's `dicom_window` / `dicom_frame` for this image only.
    """

    window: Annotated[str | None, WithJsonSchema(_WINDOW_SCHEMA)] = Field(
        default=None, description=f"DICOM window: {WINDOW_HINT}"
    )  # [centre, width] is turned into "CENTRE,WIDTH" by `_check_window`
    frame: StrictInt | None = Field(default=None, ge=0, le=MAX_TOKENS_LIMIT, description="0-based frame")

    @field_validator("window", mode="before")
    @classmethod
    def _check_window(cls, value: Any) -> str | None:
        """A preset or "CENTRE,WIDTH" string (as `dicom_window`), or [centre, width]; checked by `parse_window`."""
        if value is None:
            return None
        if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
            value = f"{float(value[0])!r},{float(value[1])!r}"
        elif not isinstance(value, str) or not 1 <= len(value) <= 64:
            raise PydanticCustomError("dicom_window", f"window must be {WINDOW_HINT}")
        try:
            parse_window(value)
        except ImageError as exc:
            raise PydanticCustomError("dicom_window", "{problem}", {"problem": str(exc)}) from None
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL
    dicom: DicomOptions | None = None  # bimedix2 extension: this image's DICOM window and frame


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]
_PART_MODELS: dict[str, type[BaseModel]] = {"text": TextPart, "image_url": ImagePart}


def _part_error(index: int, where: str, problem: str) -> PydanticCustomError:
    """An error about content part `index` (`where`: a path inside the part, e.g. ".image_url.url")."""
    return PydanticCustomError("content_part", "{problem}", {"index": index, "where": where, "problem": problem})


def _check_content(value: Any) -> Any:
    """Content in user terms: each part's problem is reported at `messages[i].content[j]`, not as a union's branches."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise PydanticCustomError("content_type", "content must be a string or a list of parts")
    for j, part in enumerate(value):
        if not isinstance(part, dict):
            raise _part_error(j, "", "a content part must be an object such as {'type': 'text', 'text': ...}")
        if "type" not in part:
            raise _part_error(j, "", f"part has no 'type'; use {PART_TYPES}")
        model = _PART_MODELS.get(part["type"]) if isinstance(part["type"], str) else None
        if model is None:
            raise _part_error(j, "", f"unknown part type {str(part['type'])[:40]!r}; use {PART_TYPES}")
        try:
            model.model_validate(part)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
            raise _part_error(j, where, first["msg"]) from None
    return value


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str | list[ContentPart] | None, BeforeValidator(_check_content)] = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    """POST /v1/chat/completions. Fields OpenAI defines but this server cannot honour are rejected."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    n: StrictInt | None = Field(default=None, ge=1, le=1, description="only n=1 is supported")
    presence_penalty: float | None = Field(default=None, ge=0.0, le=0.0, description="only 0 is supported")
    frequency_penalty: float | None = Field(default=None, ge=0.0, le=0.0, description="only 0 is supported")
    user: str | None = None
    # bimedix2 extensions (pass with the SDK's extra_body)
    steer_language: bool | None = None
    dicom_window: str | None = Field(
        default=None, min_length=1, max_length=64, description='DICOM window preset (e.g. "lung") or "CENTRE,WIDTH"'
    )
    dicom_frame: StrictInt | None = Field(
        default=None, ge=0, le=MAX_TOKENS_LIMIT, description="0-based frame of a multi-frame image"
    )

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    def stop_list(self) -> tuple[str, ...]:
        """`stop` as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


def new_id() -> str:
    """A fresh completion id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "bimedix2"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_payload(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """An OpenAI-shaped error body."""
    return ErrorResponse(error=ErrorBody(message=message, type=type_, param=param, code=code)).model_dump()
