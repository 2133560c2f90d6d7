"""Images for libmtmd: the toolkit's loaded (and padded) image, resized as CLIP's processor does, as chunks.

Images reach here already opened (PNG/JPEG/DICOM) and padded to a square by `bimedix2.images`.
They are resized to the projector's input size with PIL's bicubic filter (what transformers'
CLIP image processor does, shortest edge then centre crop), so libmtmd's own resize is a no-op
and both engines see the same pixels. libmtmd then normalises them and turns each image into
chunks: image-token chunks, and text chunks where a projector wraps images in tokens.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import ImageError
from .llama_cpp_lib import clear_errors, with_errors

if TYPE_CHECKING:
    from .llama_cpp import LlamaCppHandle


def clip_resize(image: Image.Image, size: int) -> Image.Image:
    """RGB `image` resized so its shortest edge is `size` (bicubic), then centre-cropped to `size` x `size`."""
    image = image.convert("RGB")
    width, height = image.size
    if (width, height) == (size, size):
        return image
    short, long = (width, height) if width <= height else (height, width)
    scaled = int(size * long / short)
    new = (size, scaled) if width <= height else (scaled, size)
    image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


@dataclass(frozen=True)
class Chunk:
    """One piece of an image's chunks: text token ids, or an image chunk handle with its token count."""

    tokens: tuple[int, ...] = ()
    image: Any = None  # mtmd_input_chunk pointer, owned by the `ImageChunks` it came from
    n_tokens: int = 0


class ImageChunks:
    """The libmtmd chunks of one image; frees them when closed or collected."""

    def __init__(self, handle: LlamaCppHandle, chunks: Any) -> None:
        self._handle = handle
        self._chunks = chunks
        self.pieces = self._read()

    @classmethod
    def of_rgb(cls, handle: LlamaCppHandle, data: bytes, width: int, height: int) -> ImageChunks:
        """Tokenize one RGB image (`width` x `height`, 3 bytes a pixel) with the handle's projector."""
        mtmd = handle.mtmd
        if handle.vision is None:
            raise ImageError("this model has no vision projector loaded (pass --mmproj)")
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        with handle.lock:
            bitmap = mtmd.mtmd_bitmap_init(width, height, buf)
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                part = mtmd.mtmd_input_part(text=None, bitmap=bitmap)
                parts = (ctypes.POINTER(mtmd.mtmd_input_part) * 1)(ctypes.pointer(part))
                clear_errors()
                status = mtmd.mtmd_tokenize_from_parts(handle.vision, chunks, parts, 1, False)
            finally:
                mtmd.mtmd_bitmap_free(bitmap)
            if status != 0:
                mtmd.mtmd_input_chunks_free(chunks)
                raise ImageError(
                    with_errors(f"libmtmd could not preprocess a {width}x{height} image (status {status})")
                )
        return cls(handle, chunks)

    @classmethod
    def of_image(cls, handle: LlamaCppHandle, image: Image.Image, size: int) -> ImageChunks:
        """Tokenize a PIL image after `clip_resize` to the projector's `size`."""
        rgb = clip_resize(image, size)
        return cls.of_rgb(handle, np.asarray(rgb, dtype=np.uint8).tobytes(), *rgb.size)

    def _read(self) -> tuple[Chunk, ...]:
        mtmd = self._handle.mtmd
        pieces = []
        for i in range(mtmd.mtmd_input_chunks_size(self._chunks)):
            chunk = mtmd.mtmd_input_chunks_get(self._chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                pieces.append(Chunk(tokens=tuple(ptr[k] for k in range(n.value))))
            elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                pieces.append(Chunk(image=chunk, n_tokens=int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))))
            else:
                raise ImageError(f"libmtmd returned a chunk of type {kind} for an image")
        return tuple(pieces)

    def image_tokens(self) -> int:
        """Image tokens in these chunks (text chunks not counted)."""
        return sum(p.n_tokens for p in self.pieces if p.image is not None)

    def close(self) -> None:
        """Free the chunks (idempotent)."""
        if self._chunks is not None:
            with self._handle.lock:
                self._handle.mtmd.mtmd_input_chunks_free(self._chunks)
            self._chunks = None

    def __enter__(self) -> ImageChunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass
