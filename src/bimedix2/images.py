"""Reading medical images safely, and the LLaVA 'pad' preprocessing step.

Every entry point (CLI, API, data builders, evaluation) reads images through `load_image`,
so limits and error messages are the same everywhere. Pixels and file metadata are never
logged. No model code lives here.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .types import ImageRef

# OpenAI CLIP normalisation mean; LLaVA pads with this colour (image_aspect_ratio=pad).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MEAN_RGB: tuple[int, int, int] = tuple(int(x * 255) for x in CLIP_MEAN)  # type: ignore[assignment]

SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
_DICOM_MAGIC_OFFSET = 128


@dataclass(frozen=True)
class ImageLimits:
    """Bounds applied before an image is decoded (bytes, pixels) and per conversation (count)."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_images_per_message: int = 8
    max_images_per_conversation: int = 16


DEFAULT_LIMITS = ImageLimits()


def load_image(image: ImageRef | str | Path | bytes, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Open an image file or encoded bytes as an RGB PIL image with EXIF orientation applied.

    Raises `ImageError` naming the image for: missing or empty files, files over
    `limits.max_bytes`, unsupported or unrecognised formats, images over `limits.max_pixels`,
    and truncated or corrupt data.
    """
    ref = image if isinstance(image, ImageRef) else ImageRef(Path(image) if isinstance(image, str) else image)
    data = _read_bytes(ref, limits)
    if len(data) > _DICOM_MAGIC_OFFSET + 4 and data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        raise ImageError(f"{ref.label()}: DICOM input is not supported by this image reader yet")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in SUPPORTED_FORMATS:
                raise ImageError(
                    f"{ref.label()}: unsupported image type {fmt}; supported: {', '.join(SUPPORTED_FORMATS)}"
                )
            width, height = img.size
            if width * height > limits.max_pixels:
                raise ImageError(
                    f"{ref.label()}: {width}x{height} pixels exceeds the limit of {limits.max_pixels} pixels"
                )
            if width == 0 or height == 0:
                raise ImageError(f"{ref.label()}: image has zero width or height")
            img.seek(0)  # multi-page TIFF: the first page
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{ref.label()}: not a recognised image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{ref.label()}: image too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncated/corrupt data as these
        raise ImageError(f"{ref.label()}: image data is truncated or corrupt ({exc})") from None


def _read_bytes(ref: ImageRef, limits: ImageLimits) -> bytes:
    if isinstance(ref.source, bytes):
        data = ref.source
    else:
        path = ref.source
        if not path.exists():
            raise ImageError(f"{ref.label()}: image file not found")
        if not path.is_file():
            raise ImageError(f"{ref.label()}: not a regular file")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageError(f"{ref.label()}: file is {size} bytes, over the limit of {limits.max_bytes} bytes")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{ref.label()}: image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"{ref.label()}: {len(data)} bytes is over the limit of {limits.max_bytes} bytes")
    return data


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16-bit and float greyscale (common in medical TIFFs) are min-max scaled to 0-255 rather
    than clipped, so the full dynamic range stays visible. Alpha is dropped, as LLaVA does.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
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


# Pillow would otherwise silently pad truncated files with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
