"""OpenAI request -> toolkit dataclasses (Messages, ImageRefs, GenParams), with clear 4xx errors."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..dicom.decode import parse_window
from ..errors import ImageError, PayloadTooLargeError, PermissionDeniedError, RequestError
from ..types import GenParams, ImageRef, Message
from .config import ServeConfig
from .protocol import ChatCompletionRequest, DicomOptions, ImagePart

DATA_URL_TYPES = ("image/png", "image/jpeg", "image/jpg", "application/dicom", "image/dicom")


def to_gen_params(req: ChatCompletionRequest, config: ServeConfig) -> GenParams:
    """Decoding settings; the released defaults (temperature 0.1) where the request says nothing."""
    defaults = GenParams()
    max_tokens = req.max_completion_tokens or req.max_tokens or config.default_max_tokens
    return GenParams(
        max_new_tokens=max_tokens,
        temperature=defaults.temperature if req.temperature is None else req.temperature,
        top_p=defaults.top_p if req.top_p is None else req.top_p,
        seed=req.seed,
        stop=req.stop_list(),
        steer_language=config.steer_language if req.steer_language is None else req.steer_language,
    )


def to_messages(req: ChatCompletionRequest, config: ServeConfig) -> tuple[Message, ...]:
    """Messages with images decoded to bytes; `developer` is treated as `system` (OpenAI's newer name)."""
    out: list[Message] = []
    for i, msg in enumerate(req.messages):
        role = "system" if msg.role == "developer" else msg.role
        param = f"messages[{i}].content"
        if msg.content is None:
            raise RequestError(f"{param}: content is missing", param=param)
        if isinstance(msg.content, str):  # a literal "<image>" in text stays text (render_prompt marks it)
            out.append(Message(role, msg.content))  # type: ignore[arg-type]
            continue
        texts: list[str] = []
        images: list[ImageRef] = []
        for j, part in enumerate(msg.content):
            if isinstance(part, ImagePart):
                if role != "user":
                    raise RequestError(f"{param}[{j}]: only user messages can carry images", param=f"{param}[{j}]")
                if part.dicom is None or part.dicom.window is None:
                    _check_window(req, f"{param}[{j}]")  # the request's window applies to this image
                images.append(image_ref(part.image_url.url, f"{param}[{j}]", req, config, part.dicom))
            else:
                texts.append(part.text)
        out.append(Message(role, "\n".join(texts), tuple(images)))  # type: ignore[arg-type]
    return tuple(out)


def _check_window(req: ChatCompletionRequest, param: str) -> None:
    """A bad `dicom_window` named at the first image it would apply to (the image reader's own message says neither)."""
    if req.dicom_window is None:
        return
    try:
        parse_window(req.dicom_window)
    except ImageError as exc:
        problem = str(exc).split(": ", 1)[-1]  # parse_window's hint ("use one of lung, ... or CENTRE,WIDTH ...")
        raise RequestError(
            f"{param}: dicom_window {req.dicom_window[:40]!r} is not a window; {problem}",
            param=param,
            code="invalid_image",
        ) from None


def image_ref(
    url: str, param: str, req: ChatCompletionRequest, config: ServeConfig, dicom: DicomOptions | None = None
) -> ImageRef:
    """An ImageRef for a data: URL, or a file:// URL under an allowed directory.

    Its DICOM window and frame: the part's own `dicom` options where set, else the request's.
    """
    if url.startswith("data:"):
        data = _decode_data_url(url, param, config)
        source: Path | bytes = data
    elif url.startswith("file:"):
        source = _local_file(url, param, config)
    elif url.startswith(("http:", "https:")):
        raise RequestError(
            f"{param}: remote image URLs are not fetched by this server; send the image as a data: URL",
            param=param,
            code="unsupported_image_url",
        )
    else:
        raise RequestError(f"{param}: image_url must be a data: URL (or file:// where allowed)", param=param)
    own = dicom or DicomOptions()
    window = own.window if own.window is not None else req.dicom_window
    frame = own.frame if own.frame is not None else req.dicom_frame
    return ImageRef(source, param, window=window, frame=frame)


def _decode_data_url(url: str, param: str, config: ServeConfig) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise RequestError(f"{param}: malformed data: URL (no comma)", param=param, code="invalid_image")
    meta = header[5:].split(";")
    media_type = meta[0].strip().lower()
    if "base64" not in (m.strip().lower() for m in meta[1:]):
        raise RequestError(f"{param}: data: URL must be base64-encoded", param=param, code="invalid_image")
    if media_type not in DATA_URL_TYPES:
        raise RequestError(
            f"{param}: unsupported image type {media_type or '(none)'}; use image/png, image/jpeg or application/dicom",
            param=param,
            code="invalid_image",
        )
    if len(payload) * 3 // 4 > config.max_image_bytes + 3:
        raise PayloadTooLargeError(
            f"{param}: image is about {len(payload) * 3 // 4} bytes, over the limit of {config.max_image_bytes} bytes",
            param=param,
            code="image_too_large",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{param}: image data is not valid base64", param=param, code="invalid_image") from None


def _local_file(url: str, param: str, config: ServeConfig) -> Path:
    if not config.local_image_dirs:
        raise PermissionDeniedError(
            f"{param}: file:// image URLs are disabled on this server (start it with --allow-local-images DIR)",
            param=param,
            code="local_files_disabled",
        )
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise RequestError(f"{param}: file:// URL must be local (file:///path)", param=param)
    path = Path(unquote(parsed.path)).resolve()
    if not any(path.is_relative_to(d.resolve()) for d in config.local_image_dirs):
        raise PermissionDeniedError(
            f"{param}: {path} is outside the directories this server may read images from",
            param=param,
            code="local_file_forbidden",
        )
    if path.is_file() and path.stat().st_size > config.max_image_bytes:
        raise PayloadTooLargeError(
            f"{param}: image file is over the limit of {config.max_image_bytes} bytes", param=param
        )
    return path
