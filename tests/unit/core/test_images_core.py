"""Image formats, EXIF orientation, 16-bit TIFF, LLaVA pad-to-square and size limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bimedix2.errors import ImageError
from bimedix2.images import CLIP_MEAN_RGB, ImageLimits, load_image, pad_to_square


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_supported_formats_load_as_rgb(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"img.{fmt.lower()}"
    Image.new("L", (30, 20), 128).save(path, fmt)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (30, 20)
    assert abs(int(np.asarray(img)[5, 5, 0]) - 128) <= 2


def test_16bit_tiff_is_scaled_to_full_8bit_range(tmp_path: Path) -> None:
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    path = tmp_path / "ct.tif"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = np.asarray(load_image(path))[:, :, 0]
    assert out.tolist() == [[0, 64], [128, 255]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 10), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (10, 40)


def test_pad_to_square_matches_llava_expand2square() -> None:
    img = Image.new("RGB", (40, 10), (255, 255, 255))
    square = pad_to_square(img)
    assert square.size == (40, 40)
    arr = np.asarray(square)
    assert tuple(arr[0, 0]) == CLIP_MEAN_RGB == (122, 116, 104)
    assert tuple(arr[15, 0]) == (255, 255, 255) and tuple(arr[14, 0]) == CLIP_MEAN_RGB  # pasted at (0, 15)
    tall = pad_to_square(Image.new("RGB", (10, 41), (0, 0, 0)))
    assert tall.size == (41, 41) and tuple(np.asarray(tall)[0, 15]) == (0, 0, 0)  # pasted at (15, 0)


def test_limits(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(path)
    with pytest.raises(ImageError, match="300x300 pixels exceeds the limit of 10000 pixels"):
        load_image(path, ImageLimits(max_pixels=10_000))
    with pytest.raises(ImageError, match=r"bytes, over the limit of 100 bytes"):
        load_image(path, ImageLimits(max_bytes=100))


def test_bytes_source_and_rgba(tmp_path: Path) -> None:
    import io

    buf = io.BytesIO()
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(buf, "PNG")
    img = load_image(buf.getvalue())
    assert img.mode == "RGB" and tuple(np.asarray(img)[0, 0]) == (10, 20, 30)
