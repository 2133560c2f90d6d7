"""Hostile and odd inputs: each gets a clear ImageError or a defined, documented behaviour.

The README table "Bad input: what happens" lists the same cases.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from bimedix2.errors import ImageError
from bimedix2.images import ImageLimits, load_image, mime_matches, open_image, safe_label
from bimedix2.types import ImageRef


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header claims width x height pixels (1-bit), with almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- files and bytes
def test_zero_byte_missing_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: image is empty \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(ImageError, match="image file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="image is empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP"])
def test_truncated_files(fmt: str) -> None:
    rng = np.random.default_rng(1)
    data = _encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageError, match="truncated or corrupt|not a recognised image"):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is text\n" * 10,
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        b"\x7fELF\x02\x01\x01" + b"\0" * 64,
        b"PK\x03\x04" + b"\0" * 40,
        b"\x89PNG\r\n\x1a\n" + b"\xff" * 50,
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
    ids=["text", "pdf", "elf", "zip", "png-signature-garbage", "svg"],
)
def test_non_image_bytes(data: bytes) -> None:
    with pytest.raises(ImageError, match="not a recognised image file|truncated or corrupt"):
        load_image(data)


def test_unsupported_format_is_named() -> None:
    with pytest.raises(ImageError, match="unsupported image type ICO"):
        load_image(_encode(Image.new("RGB", (16, 16)), "ICO"))


def test_wrong_extension_content_decides(tmp_path: Path) -> None:
    png_as_jpg = tmp_path / "photo.jpg"
    png_as_jpg.write_bytes(_encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG"))
    loaded = open_image(png_as_jpg)
    assert loaded.format == "PNG" and tuple(np.asarray(loaded.image)[0, 0]) == (1, 2, 3)
    dicom_as_png = tmp_path / "scan.png"
    dicom_as_png.write_bytes(Path(get_testdata_file("MR_small.dcm")).read_bytes())
    assert open_image(dicom_as_png).format == "DICOM"


def test_wrong_mime_is_detected() -> None:
    png = _encode(Image.new("RGB", (8, 8)), "PNG")
    assert mime_matches("image/png", png) and mime_matches("IMAGE/PNG; charset=binary", png)
    assert not mime_matches("image/jpeg", png) and not mime_matches("application/dicom", png)
    assert not mime_matches("image/png", b"not an image")


# ----------------------------------------------------------------------------- decompression bombs
def test_png_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _png_bomb(100_000, 100_000)  # 10 G pixels claimed in ~100 bytes
    assert len(bomb) < 200
    with pytest.raises(ImageError, match="exceeds the limit|decompression bomb guard"):
        load_image(bomb)
    with pytest.raises(ImageError, match="9000x9000 pixels exceeds the limit of 64000000"):
        load_image(_png_bomb(9000, 9000))


def test_pillow_bomb_guard_is_an_error_even_with_a_higher_limit() -> None:
    with pytest.raises(ImageError, match="decompression bomb guard|exceeds the limit"):
        load_image(_png_bomb(20_000, 20_000), ImageLimits(max_pixels=10**12))


# ----------------------------------------------------------------------------- multi-frame
def _frames(fmt: str) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (20, 20), c) for c in colours]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:])


@pytest.mark.parametrize(("fmt", "kind"), [("GIF", "animated GIF"), ("TIFF", "multi-page TIFF")])
def test_multi_frame_uses_first_frame_and_says_so(fmt: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    data = _frames(fmt)
    loaded = open_image(ImageRef(data, name=f"clip.{fmt.lower()}"))
    assert (loaded.frame, loaded.frames) == (0, 3)
    note = f"clip.{fmt.lower()}: {kind} with 3 frames; using frame 0 (the first; choose with --frame)"
    assert loaded.notes == (note,)
    assert tuple(np.asarray(loaded.image)[0, 0]) == (255, 0, 0)
    assert tuple(np.asarray(load_image(ImageRef(data, frame=2)))[0, 0]) == (0, 0, 255)
    with pytest.raises(ImageError, match=r"frame 3 is out of range; the image has 3 frame\(s\)"):
        load_image(ImageRef(data, frame=3))
    with pytest.raises(ImageError, match="frame must be 0 or more"):
        load_image(ImageRef(data, frame=-1))
    caplog.clear()
    with caplog.at_level("WARNING", logger="bimedix2.images"):
        load_image(ImageRef(data, name=f"logged.{fmt.lower()}"))
        load_image(ImageRef(data, name=f"logged.{fmt.lower()}"))  # said once, not every turn
    assert [r.getMessage() for r in caplog.records].count(
        f"logged.{fmt.lower()}: {kind} with 3 frames; using frame 0 (the first; choose with --frame)"
    ) == 1


def test_window_on_a_non_dicom_image_is_noted() -> None:
    loaded = open_image(ImageRef(_encode(Image.new("L", (8, 8)), "PNG"), name="x.png", window="lung"))
    assert loaded.notes == ("x.png: window 'lung' ignored: windows apply to DICOM images only",)


# ----------------------------------------------------------------------------- modes
def test_cmyk_jpeg() -> None:
    img = load_image(_encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=100))
    r, g, b = np.asarray(img)[8, 8].tolist()
    assert img.mode == "RGB" and r > 240 and g < 15 and b < 15  # cyan-free magenta+yellow = red


def test_la_p_and_1bit() -> None:
    la = load_image(_encode(Image.new("LA", (8, 8), (200, 0)), "PNG"))
    assert tuple(np.asarray(la)[0, 0]) == (200, 200, 200)  # alpha dropped, as LLaVA does
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert tuple(np.asarray(load_image(_encode(pal, "PNG")))[0, 0]) == (10, 20, 30)
    pal.info["transparency"] = 1
    assert tuple(np.asarray(load_image(_encode(pal, "PNG", transparency=1)))[0, 0]) == (10, 20, 30)
    assert tuple(np.asarray(load_image(_encode(Image.new("1", (8, 8), 1), "PNG")))[0, 0]) == (255, 255, 255)


def test_16bit_png_and_float_tiff() -> None:
    arr16 = np.array([[0, 1000], [3000, 4000]], dtype=np.uint16)
    img = Image.fromarray(arr16)
    assert img.mode.startswith("I;16")
    assert np.asarray(load_image(_encode(img, "PNG")))[..., 0].tolist() == [[0, 64], [191, 255]]
    arrf = np.array([[np.nan, 0.0], [0.5, 1.0]], dtype=np.float32)
    out = np.asarray(load_image(_encode(Image.fromarray(arrf), "TIFF")))[..., 0]
    assert out.tolist() == [[0, 0], [128, 255]]  # NaN shown as the minimum
    flat = np.asarray(load_image(_encode(Image.fromarray(np.full((4, 4), 7, np.uint16)), "PNG")))
    assert (flat == 0).all()  # a constant image has no range: black, not a division by zero


# ----------------------------------------------------------------------------- shapes
def test_extreme_aspect_ratios() -> None:
    with pytest.raises(ImageError, match=r"2000x10 has aspect ratio 200:1, over the limit of 20:1"):
        load_image(_encode(Image.new("RGB", (2000, 10)), "PNG"))
    with pytest.raises(ImageError, match="aspect ratio"):
        load_image(_encode(Image.new("RGB", (1, 100)), "PNG"))
    assert load_image(_encode(Image.new("RGB", (30, 600)), "PNG")).size == (30, 600)  # exactly 20:1


def test_very_large_images_are_downscaled_for_processing() -> None:
    loaded = open_image(ImageRef(_encode(Image.new("RGB", (5000, 400)), "PNG"), name="wide.png"))
    assert loaded.image.size == (4096, 328)
    assert loaded.notes == ("wide.png: downscaled from 5000x400 to 4096x328 (longest side limit 4096)",)


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [(3, (40, 10), (0, 0, 255)), (6, (10, 40), None), (8, (10, 40), None), (1, (40, 10), (255, 0, 0))],
)
def test_exif_rotations(orientation: int, size: tuple[int, int], corner: tuple[int, int, int] | None) -> None:
    img = Image.new("RGB", (40, 10), (255, 0, 0))
    img.paste((0, 0, 255), (30, 0, 40, 10))  # right end blue
    exif = img.getexif()
    exif[0x0112] = orientation
    out = load_image(_encode(img, "PNG", exif=exif))
    assert out.size == size
    if corner is not None:  # orientation 3 (180 degrees) puts the blue end on the left
        assert tuple(np.asarray(out)[5, 2]) == corner


# ----------------------------------------------------------------------------- names in messages
def test_bidi_and_zero_width_in_file_names_are_escaped(tmp_path: Path) -> None:
    name = "scan\u202egnp.exe\u200b.png"
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / name)
    message = str(info.value)
    assert "\u202e" not in message and "\u200b" not in message
    assert "scan\\u202egnp.exe\\u200b.png" in message
    assert safe_label("a" * 1000).count("a") < 130


def test_max_bytes_reads_no_further(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * 2048)
    with pytest.raises(ImageError, match="over the limit of 1024 bytes"):
        load_image(path, ImageLimits(max_bytes=1024))
