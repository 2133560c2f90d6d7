"""Perceptual image hashes (the `imagehash` library) and a Hamming-distance search over test hashes.

A 64-bit pHash (DCT of the 32x32 greyscale image) or dHash (gradient signs of a 9x8 one) stays
within a few bits when an image is re-encoded, resized or lightly recompressed, while unrelated
images differ in about half of them. Images are opened with the toolkit's own safe loader
(`bimedix2.images`: size limits, DICOM, EXIF orientation).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ImageError
from ...images import load_image
from ...types import ImageRef

HASH_KINDS: tuple[str, ...] = ("phash", "dhash")
HASH_BITS = 64
# A (near-)uniform image has no structure to hash: its hash would match every other flat image.
_MIN_GREY_STD = 1.0
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class UnhashableImage(ValueError):
    """An image that cannot be opened or carries nothing to hash; the message says why."""


def _hash_function(kind: str) -> Callable[..., Any]:
    if kind not in HASH_KINDS:
        raise ValueError(f"unknown image hash {kind!r} (known: {', '.join(HASH_KINDS)})")
    try:
        import imagehash
    except ImportError as exc:  # the `data` extra
        raise ImportError("the contamination audit needs imagehash: pip install 'bimedix2[data]'") from exc
    return getattr(imagehash, kind)


def perceptual_hash(image: ImageRef | Path, kind: str = "phash") -> int:
    """The 64-bit perceptual hash of an image file; `UnhashableImage` when unreadable or uniform."""
    fn = _hash_function(kind)
    try:
        img = load_image(image if isinstance(image, ImageRef) else ImageRef(Path(image)))
    except (ImageError, OSError) as exc:
        raise UnhashableImage(str(exc)) from None
    grey = img.convert("L")
    if float(np.asarray(grey, dtype=np.float32).std()) < _MIN_GREY_STD:
        raise UnhashableImage("uniform image (no structure to hash)")
    bits = np.asarray(fn(grey, hash_size=8).hash, dtype=bool).reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    """Bits that differ between two hashes."""
    return (a ^ b).bit_count()


class HashIndex:
    """Test image hashes, searched by Hamming distance (vectorised; test sets hold thousands, not millions)."""

    def __init__(self) -> None:
        self._keys: list[int] = []
        self._hashes: list[int] = []
        self._labels: list[str] = []
        self._array: np.ndarray | None = None

    def add(self, key: int, value: int, label: str) -> None:
        """Index one test image's hash under `key` (a key may hold several images); `label` names it."""
        self._keys.append(key)
        self._hashes.append(value)
        self._labels.append(label)
        self._array = None

    def __len__(self) -> int:
        return len(self._hashes)

    def near(self, value: int, max_distance: int) -> list[tuple[int, int, str]]:
        """(key, distance, label) of every indexed image within `max_distance` bits of `value`."""
        if not self._hashes:
            return []
        if self._array is None:
            self._array = np.array(self._hashes, dtype=np.uint64)
        xor = np.bitwise_xor(self._array, np.uint64(value))
        distances = _POPCOUNT8[xor.view(np.uint8)].reshape(-1, 8).sum(axis=1)
        hits = np.flatnonzero(distances <= max_distance)
        return [(self._keys[i], int(distances[i]), self._labels[i]) for i in hits]
