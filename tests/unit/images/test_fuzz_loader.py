"""Bounded fuzzing of the image loader: any bytes give an RGB image or an ImageError, nothing else.

Inputs are random bytes and mutated real files (PNG, JPEG, GIF, TIFF, BMP, WebP and pydicom's
MR_small.dcm / CT_small.dcm): flipped bytes, truncation, inserted bytes. Error messages must never
quote the DICOM files' patient name or ID. Derandomized and capped at 200 (random) and 400 (mutated) examples,
so CI time is bounded and runs are repeatable.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.data import get_testdata_file

from bimedix2.errors import ImageError
from bimedix2.images import ImageLimits, open_image
from bimedix2.types import ImageRef

LIMITS = ImageLimits(max_pixels=4_000_000, max_bytes=1 << 20)  # small caps keep each example fast
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    seeds = {}
    for fmt in ("PNG", "JPEG", "BMP", "WEBP"):
        buf = io.BytesIO()
        img.save(buf, fmt)
        seeds[fmt] = buf.getvalue()
    for fmt in ("GIF", "TIFF"):
        buf = io.BytesIO()
        img.save(buf, fmt, save_all=True, append_images=[img.rotate(90), img.rotate(180)])
        seeds[fmt] = buf.getvalue()
    for name in ("MR_small.dcm", "CT_small.dcm"):
        seeds[name] = Path(get_testdata_file(name)).read_bytes()
    return seeds


SEEDS = _seed_files()
PHI = []
for _name in ("MR_small.dcm", "CT_small.dcm"):
    _ds = pydicom.dcmread(get_testdata_file(_name), stop_before_pixels=True)
    PHI += [str(_ds.PatientName), str(_ds.PatientID)]


def _check(data: bytes, window: str | None = None, frame: int | None = None) -> None:
    try:
        loaded = open_image(ImageRef(data, name="fuzz", window=window, frame=frame), LIMITS)
    except ImageError as exc:
        message = str(exc)
        assert message.startswith("fuzz: ") or "window" in message, message
        assert not any(value in message for value in PHI), message
        return
    assert loaded.image.mode == "RGB"
    width, height = loaded.image.size
    assert 1 <= width <= LIMITS.max_side and 1 <= height <= LIMITS.max_side
    assert not any(value in note for note in loaded.notes for value in PHI)


@FUZZ
@given(st.binary(min_size=0, max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[at : at + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(FUZZ, max_examples=400)
@given(mutated(), st.sampled_from([None, "lung", "40,400"]), st.sampled_from([None, 0, 1, 2]))
def test_mutated_real_files(data: bytes, window: str | None, frame: int | None) -> None:
    _check(data, window, frame)
