"""Reading medical images safely, and the LLaVA 'pad' preprocessing step.

Every entry point (CLI, API, data builders, evaluation) reads images through `load_image`
(or `open_image`, which also says how the image was read), so limits and error messages are
the same everywhere. The content decides the format, never the file extension. Pixels and
file metadata are never logged; DICOM goes through `bimedix2.dicom`. No model code lives here.
"""

from __future__ import annotations

import io
import logging
import unicodedata
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error  # Pillow raises it on some short headers

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .types import ImageRef

logger = logging.getLogger(__name__)

# OpenAI CLIP normalisation mean; LLaVA pads with this colour (image_aspect_ratio=pad).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MEAN_RGB: tuple[int, int, int] = tuple(int(x * 255) for x in CLIP_MEAN)  # type: ignore[assignment]

SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "MPO", "DICOM")
# MIME types per format, for callers that check a declared type (e.g. a data URL) against the content.
MIME_TYPES: dict[str, tuple[str, ...]] = {
    "PNG": ("image/png",),
    "JPEG": ("image/jpeg", "image/jpg", "image/pjpeg"),
    "MPO": ("image/jpeg", "image/mpo"),
    "BMP": ("image/bmp", "image/x-ms-bmp"),
    "TIFF": ("image/tiff",),
    "GIF": ("image/gif",),
    "WEBP": ("image/webp",),
    "DICOM": ("application/dicom",),
}


@dataclass(frozen=True)
class ImageLimits:
    """Bounds applied before an image is decoded (bytes, pixels, shape) and per conversation (count).

    Images longer than `max_side` are downscaled (aspect kept) after decoding, so padding to a
    square stays bounded; images more elongated than `max_aspect_ratio` are refused.
    """

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_images_per_message: int = 8
    max_images_per_conversation: int = 16
    max_aspect_ratio: float = 20.0
    max_side: int = 4096


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True)
class LoadedImage:
    """An image as read: 8-bit RGB pixels plus what the user should know about how it was read."""

    image: Image.Image
    format: str  # one of SUPPORTED_FORMATS
    frame: int  # 0-based frame/page used
    frames: int  # frames/pages in the file
    notes: tuple[str, ...] = ()  # e.g. "first frame of 3 used"; never patient data
    rendering: str = ""  # DICOM: how values became 8-bit (window, VOI LUT, full range)


def load_image(image: ImageRef | str | Path | bytes, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Open an image file or encoded bytes as an RGB PIL image with EXIF orientation applied.

    DICOM is decoded with `image.window` / `image.frame` (see `ImageRef`). Notes about how
    the image was read (first frame of an animated GIF, middle frame of a DICOM series...)
    are logged once as warnings. Raises `ImageError` naming the image; see `open_image`.
    """
    loaded = open_image(image, limits)
    for note in loaded.notes:
        _warn_once(note)
    return loaded.image


def open_image(image: ImageRef | str | Path | bytes, limits: ImageLimits = DEFAULT_LIMITS) -> LoadedImage:
    """Read an image and say how it was read.

    Raises `ImageError` naming the image for: missing or empty files, files over
    `limits.max_bytes`, unsupported or unrecognised formats, images over `limits.max_pixels`
    or `limits.max_aspect_ratio`, frames out of range, bad windows, DICOM without pixel data
    or without an installed decoder plugin, and truncated or corrupt data.
    """
    ref = image if isinstance(image, ImageRef) else ImageRef(Path(image) if isinstance(image, str) else image)
    label = safe_label(ref.label())
    data = _read_bytes(ref, label, limits)
    if ref.frame is not None and ref.frame < 0:
        raise ImageError(f"{label}: frame must be 0 or more, got {ref.frame}")
    from .dicom import DECODE_LOCK

    with DECODE_LOCK:  # see dicom.DECODE_LOCK: warning filters are process-wide
        if detect_format(data) == "DICOM":
            loaded = _open_dicom(ref, data, label, limits)
        else:
            loaded = _open_pil(ref, data, label, limits)
    return _bound_shape(loaded, label, limits)


def detect_format(data: bytes) -> str | None:
    """The format the bytes hold (one of SUPPORTED_FORMATS, or another Pillow name), else None."""
    from .dicom import is_dicom

    if is_dicom(data):
        return "DICOM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.format
    except Exception:  # noqa: BLE001 - any failure to identify means "not an image we know"
        return None


def mime_matches(mime: str, data: bytes) -> bool:
    """Whether a declared MIME type (e.g. from a data URL) agrees with what the bytes hold."""
    fmt = detect_format(data)
    return fmt is not None and mime.split(";")[0].strip().lower() in MIME_TYPES.get(fmt, ())


def safe_label(label: str, max_chars: int = 120) -> str:
    """A name fit for a message: control and format characters (bidi overrides, zero-width)
    shown as escapes so they cannot reorder or hide text, and long names shortened."""
    cleaned = "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in label
    )
    if len(cleaned) > max_chars:
        cleaned = cleaned[: max_chars // 2 - 2] + "..." + cleaned[-(max_chars // 2 - 1) :]
    return cleaned


def _open_dicom(ref: ImageRef, data: bytes, label: str, limits: ImageLimits) -> LoadedImage:
    from .dicom import decode_dicom

    decoded = decode_dicom(
        data, label, window=ref.window, frame=ref.frame, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes
    )
    image = decoded.image if decoded.image.mode == "RGB" else decoded.image.convert("RGB")
    return LoadedImage(image, "DICOM", decoded.frame, decoded.frames, decoded.notes, decoded.rendering)


def _open_pil(ref: ImageRef, data: bytes, label: str, limits: ImageLimits) -> LoadedImage:
    notes: list[str] = []
    if ref.window is not None:
        notes.append(f"{label}: window {ref.window[:40]!r} ignored: windows apply to DICOM images only")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's corrupt-metadata chatter; errors still raise
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in SUPPORTED_FORMATS:
                raise ImageError(f"{label}: unsupported image type {fmt}; supported: {', '.join(SUPPORTED_FORMATS)}")
            width, height = img.size
            if width * height > limits.max_pixels:
                raise ImageError(f"{label}: {width}x{height} pixels exceeds the limit of {limits.max_pixels} pixels")
            if width == 0 or height == 0:
                raise ImageError(f"{label}: image has zero width or height")
            frames = int(getattr(img, "n_frames", 1) or 1)
            index = ref.frame if ref.frame is not None else 0
            if index >= frames:
                raise ImageError(f"{label}: frame {index} is out of range; the image has {frames} frame(s)")
            if frames > 1:
                kinds = {"GIF": "animated GIF", "TIFF": "multi-page TIFF", "WEBP": "animated WebP"}
                kind = kinds.get(fmt, f"{fmt} with frames")
                how = "the first; choose with --frame" if ref.frame is None else "as asked"
                notes.append(f"{label}: {kind} with {frames} frames; using frame {index} ({how})")
            img.seek(index)
            img.load()
            img = ImageOps.exif_transpose(img)
            return LoadedImage(_convert(img, label), fmt, index, frames, tuple(notes))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{label}: not a recognised image file (supported: {', '.join(SUPPORTED_FORMATS)}; "
            "DICOM must be a Part 10 file: 128-byte preamble, then 'DICM')"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label}: image too large (decompression bomb guard)") from None
    except MemoryError:
        raise ImageError(f"{label}: image too large to decode in memory") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct_error) as exc:
        # Pillow reports truncated/corrupt data as these; its messages carry no pixel data.
        raise ImageError(f"{label}: image data is truncated or corrupt ({type(exc).__name__}: {exc})"[:400]) from None


def _convert(img: Image.Image, label: str) -> Image.Image:
    try:
        return to_rgb(img)
    except (ValueError, OSError) as exc:
        raise ImageError(f"{label}: cannot convert image mode {img.mode} to RGB ({exc})") from None


def _bound_shape(loaded: LoadedImage, label: str, limits: ImageLimits) -> LoadedImage:
    width, height = loaded.image.size
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > limits.max_aspect_ratio:
        raise ImageError(
            f"{label}: {width}x{height} has aspect ratio {ratio:.0f}:1, over the limit of "
            f"{limits.max_aspect_ratio:g}:1; crop it first"
        )
    if max(width, height) <= limits.max_side:
        return loaded
    scale = limits.max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = loaded.image.resize(size, Image.Resampling.LANCZOS)
    note = f"{label}: downscaled from {width}x{height} to {size[0]}x{size[1]} (longest side limit {limits.max_side})"
    return LoadedImage(image, loaded.format, loaded.frame, loaded.frames, (*loaded.notes, note), loaded.rendering)


def _read_bytes(ref: ImageRef, label: str, limits: ImageLimits) -> bytes:
    if isinstance(ref.source, bytes):
        data = ref.source
    else:
        path = Path(ref.source)
        if not path.exists():
            raise ImageError(f"{label}: image file not found")
        if not path.is_file():
            raise ImageError(f"{label}: not a regular file")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageError(f"{label}: file is {size} bytes, over the limit of {limits.max_bytes} bytes")
        with path.open("rb") as fh:  # read at most the limit: the file may grow or be a device
            data = fh.read(limits.max_bytes + 1)
    if not data:
        raise ImageError(f"{label}: image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"{label}: {len(data)} bytes is over the limit of {limits.max_bytes} bytes")
    return data


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16-bit and float greyscale (common in medical TIFFs) are min-max scaled to 0-255 rather
    than clipped, so the full dynamic range stays visible. Alpha is dropped, as LLaVA does.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        scaled = np.zeros_like(arr) if hi <= lo else (np.clip(arr, lo, hi) - lo) / (hi - lo) * 255.0
        img = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def pad_to_square(img: Image.Image, background: tuple[int, int, int] = CLIP_MEAN_RGB) -> Image.Image:
    """LLaVA's `expand2square`: centre the image on a square canvas of `background` colour."""
    width, height = img.size
    if width == height:
        return img
    side = max(width, height)
    canvas = Image.new(img.mode, (side, side), background)
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
    return canvas


_REPORTED: OrderedDict[str, None] = OrderedDict()


def _warn_once(note: str) -> None:
    """Log a note the first time it is seen (images are re-read every turn of a chat)."""
    if note in _REPORTED:
        return
    _REPORTED[note] = None
    if len(_REPORTED) > 256:
        _REPORTED.popitem(last=False)
    logger.warning("%s", note)


# Pillow would otherwise silently pad truncated files with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
