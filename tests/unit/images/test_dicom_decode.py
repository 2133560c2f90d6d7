"""DICOM decoding on pydicom's shipped test files, checked against hand-computed pixel values."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder

from bimedix2.dicom import WINDOW_PRESETS, decode_dicom, parse_window
from bimedix2.errors import ImageError
from bimedix2.images import ImageLimits, detect_format, load_image, mime_matches, open_image
from bimedix2.types import ImageRef


def _file(name: str) -> Path:
    return Path(get_testdata_file(name))


def _grey(ref: ImageRef | Path) -> np.ndarray:
    img = load_image(ref)
    arr = np.asarray(img)
    assert img.mode == "RGB" and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return arr[..., 0]


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_ct_small_rescale_and_lung_window_match_hand_computed_values() -> None:
    # CT_small: RescaleSlope 1, RescaleIntercept -1024; raw[0,0]=175 -> -849 HU, raw[64,60]=2189 -> 1165 HU.
    # Lung (C -600, W 1500), PS3.3 C.11.2.1.2.1: ((-849 - (-600.5)) / 1499 + 0.5) * 255 = 85.2 -> 85.
    out = _grey(ImageRef(_file("CT_small.dcm"), window="lung"))
    assert out.shape == (128, 128)
    assert out[0, 0] == 85 and out[64, 60] == 255
    # Brain (C 40, W 80): everything at or below 0 HU is black.
    assert _grey(ImageRef(_file("CT_small.dcm"), window="brain"))[0, 0] == 0
    # Explicit centre,width works like a preset.
    assert (_grey(ImageRef(_file("CT_small.dcm"), window="-600,1500")) == out).all()


def test_ct_small_without_window_uses_full_range() -> None:
    # No window in the file: min-max of HU (-896..1167); -849 HU -> 47/2063*255 = 5.8 -> 6.
    loaded = open_image(_file("CT_small.dcm"))
    assert loaded.format == "DICOM" and "full range" in loaded.rendering
    out = np.asarray(loaded.image)[..., 0]
    assert out[0, 0] == 6 and out.min() == 0 and out.max() == 255


def test_mr_small_uses_the_files_window() -> None:
    # MR_small: WindowCenter 600, WindowWidth 1600, no rescale: raw 905 -> ((905-599.5)/1599+0.5)*255 = 176.2.
    loaded = open_image(_file("MR_small.dcm"))
    assert "the file's window (C 600, W 1600)" in loaded.rendering
    out = np.asarray(loaded.image)[..., 0]
    assert out[0, 0] == 176 and out.min() == 52  # raw minimum 127 -> 52.15


@pytest.mark.parametrize("variant", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_transfer_syntax_variants_decode_identically(variant: str) -> None:
    assert (_grey(_file(variant)) == _grey(_file("MR_small.dcm"))).all()


def test_monochrome1_is_inverted() -> None:
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    loaded = open_image(_bytes(ds))
    assert "MONOCHROME1 inverted" in loaded.rendering
    assert (np.asarray(loaded.image)[..., 0] == 255 - _grey(_file("MR_small.dcm"))).all()


def test_voi_lut_sequence_is_preferred_over_window() -> None:
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, 0, 16]  # 4096 entries from value 0, 16-bit output
    lut = (np.arange(4096) // 16 * 257).astype(np.uint16)  # raw v -> (v // 16) * 257, i.e. v // 16 in 8 bits
    item.add_new("LUTData", "US", lut.tolist())
    ds.VOILUTSequence = [item]
    loaded = open_image(_bytes(ds))
    assert loaded.rendering == "the file's VOI LUT"
    raw = pydicom.dcmread(_file("MR_small.dcm")).pixel_array
    expected = (raw // 16).astype(np.uint8)  # 16-bit output / 65535 * 255
    assert (np.asarray(loaded.image)[..., 0] == expected).all()


def test_user_window_overrides_the_files_and_sigmoid_function_is_honoured() -> None:
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    ds.VOILUTFunction = "SIGMOID"
    out = np.asarray(load_image(_bytes(ds)))[..., 0]
    # SIGMOID: 255 / (1 + exp(-4 (905 - 600) / 1600)) = 173.9
    assert out[0, 0] == 174
    assert np.asarray(load_image(ImageRef(_bytes(ds), window="0,2")))[0, 0, 0] == 255


@pytest.mark.parametrize("name", sorted(WINDOW_PRESETS))
def test_every_preset_parses_and_renders(name: str) -> None:
    window = parse_window(name.upper())
    assert (window.centre, window.width) == WINDOW_PRESETS[name]
    assert f"window {name}" in open_image(ImageRef(_file("CT_small.dcm"), window=name)).rendering


@pytest.mark.parametrize("bad", ["lungs", "1,2,3", "a,b", "40,0", "nan,400", "", "40"])
def test_bad_windows_are_refused(bad: str) -> None:
    with pytest.raises(ImageError, match="window"):
        parse_window(bad)


def test_multiframe_defaults_to_middle_and_frame_is_selectable() -> None:
    # SC_rgb_rle_2frame: pixel (0,0) is red in frame 0 and cyan in frame 1.
    path = _file("SC_rgb_rle_2frame.dcm")
    middle = open_image(path)
    assert (middle.frame, middle.frames) == (1, 2)
    assert any("2 frames; using frame 1 (the middle one" in n for n in middle.notes)
    assert tuple(np.asarray(middle.image)[0, 0]) == (0, 255, 255)
    assert tuple(np.asarray(load_image(ImageRef(path, frame=0)))[0, 0]) == (255, 0, 0)
    with pytest.raises(ImageError, match=r"frame 2 is out of range; the file has 2 frame\(s\), 0 to 1"):
        load_image(ImageRef(path, frame=2))


def test_multiframe_greyscale_frame_matches_pydicom() -> None:
    path = _file("rtdose.dcm")  # 15 frames of 32-bit dose
    frames = pydicom.dcmread(path).pixel_array.astype(np.float64)
    assert open_image(path).frame == 7
    for index in (0, 7, 14):
        arr = frames[index]
        expected = np.round((arr - arr.min()) / (arr.max() - arr.min()) * 255).astype(np.uint8)
        assert (_grey(ImageRef(path, frame=index)) == expected).all()


def test_colour_photometrics() -> None:
    ybr = open_image(_file("examples_ybr_color.dcm"))  # 30-frame JPEG baseline, YBR_FULL_422
    assert ybr.frames == 30 and ybr.frame == 15 and ybr.image.size == (320, 240)
    reference = pydicom.dcmread(_file("examples_ybr_color.dcm")).pixel_array[15]  # pydicom converts to RGB
    assert np.abs(np.asarray(ybr.image).astype(int) - reference.astype(int)).max() == 0
    palette = open_image(_file("examples_palette.dcm"))
    assert palette.rendering.startswith("palette colour") and palette.image.size == (800, 350)
    rgb = np.asarray(load_image(_file("SC_rgb_rle_16bit.dcm")))  # 16-bit RGB -> 8-bit
    assert rgb.dtype == np.uint8 and rgb.max() == 255
    note = open_image(ImageRef(_file("SC_rgb_rle.dcm"), window="lung")).notes
    assert any("applies to greyscale images only" in n for n in note)


@pytest.mark.parametrize(
    "name", ["MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPEG2000.dcm", "MR_small_jp2klossless.dcm"]
)
def test_compressed_syntaxes_decode_or_name_the_missing_plugin(name: str) -> None:
    path = _file(name)
    decoder = get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    if decoder.is_available:
        image = load_image(path)
        assert image.mode == "RGB"
        if name.startswith("MR_small_"):  # lossless re-encodings of MR_small.dcm
            assert (_grey(path) == _grey(_file("MR_small.dcm"))).all()
    else:
        with pytest.raises(ImageError) as info:
            load_image(path)
        message = str(info.value)
        assert "no installed plugin can decode it" in message and "pylibjpeg" in message


def test_jpeg2000_decodes_with_pillow_and_matches_lossless_original() -> None:
    if not get_decoder(pydicom.uid.JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 decoder plugin installed (Pillow without OpenJPEG)")
    assert (_grey(_file("MR_small_jp2klossless.dcm")) == _grey(_file("MR_small.dcm"))).all()


def test_decoder_failure_is_named() -> None:
    # 12-bit JPEG Extended: Pillow, the only installed JPEG plugin, cannot decode 12-bit samples.
    if get_decoder(pydicom.uid.JPEGExtended12Bit).available_plugins != ("pillow",):
        pytest.skip("another JPEG plugin is installed; this file decodes")
    with pytest.raises(ImageError, match="no installed plugin could decode this JPEG Extended"):
        load_image(_file("JPGExtended.dcm"))


def test_files_without_pixels_truncated_and_invalid() -> None:
    for name in ("reportsi.dcm", "rtplan.dcm"):
        with pytest.raises(ImageError, match="has no pixel data"):
            load_image(_file(name))
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(_file("MR_truncated.dcm"))
    data = _file("MR_small.dcm").read_bytes()
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match="missing or invalid"):
        load_image(_file("badVR.dcm"))  # NumberOfFrames '1A'


def test_dicom_without_part10_header_is_named() -> None:
    with pytest.raises(ImageError, match="DICOM must be a Part 10 file"):
        load_image(_file("no_meta.dcm"))


def test_pixel_limit_is_checked_before_decoding() -> None:
    ds = pydicom.dcmread(_file("MR_small.dcm"))
    ds.Rows = ds.Columns = 60000  # header claims 3.6 G pixels; the data is 64x64
    with pytest.raises(ImageError, match="60000x60000 pixels exceeds the limit"):
        load_image(_bytes(ds))
    with pytest.raises(ImageError, match="64x64 pixels exceeds the limit of 100"):
        load_image(_file("MR_small.dcm"), ImageLimits(max_pixels=100))


def test_deflated_dicom_and_deflate_bomb() -> None:
    from bimedix2.dicom.decode import _dataset_offset

    assert load_image(_file("image_dfl.dcm")).size == (512, 512)
    raw = _file("image_dfl.dcm").read_bytes()
    meta_end = _dataset_offset(raw)  # keep the file meta (deflated transfer syntax), swap the body
    assert meta_end is not None and b"1.2.840.10008.1.2.1.99" in raw[:meta_end]
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = raw[:meta_end] + packer.compress(b"\0" * (20 * 1024 * 1024)) + packer.flush()
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="decompression bomb guard"):
        load_image(bomb, ImageLimits(max_bytes=1024 * 1024))


def test_detect_format_and_mime() -> None:
    data = _file("CT_small.dcm").read_bytes()
    assert detect_format(data) == "DICOM"
    assert mime_matches("application/dicom", data) and not mime_matches("image/png", data)


def test_decode_dicom_directly_reports_rendering() -> None:
    result = decode_dicom(_file("CT_small.dcm").read_bytes(), "ct", window="bone")
    assert result.image.mode == "L" and result.frames == 1 and result.photometric == "MONOCHROME2"
    assert result.rendering == "window bone (C 400, W 1800)"
