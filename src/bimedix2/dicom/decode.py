"""DICOM for the image reader: decode one frame to 8-bit with windowing.

Decoding follows the DICOM grayscale pipeline (PS3.3 C.11): Modality LUT (rescale
slope/intercept) -> VOI (the user's window, else the file's VOI LUT, else its window
centre/width, else the full range) -> MONOCHROME1 inversion -> 8 bits. Colour images
(RGB, YBR, PALETTE COLOR) are converted to RGB by pydicom.

Patient data never leaves this module in a message: errors name the image's label and
the problem, never a tag value, and pydicom's own log and warnings (which can quote tag
values) are silenced while it reads.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageError

# Common radiology display presets (centre, width) in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
}

_DEFLATED = "1.2.840.10008.1.2.1.99"
# Logger switches and warning filters are process-wide, so image decoding holds this lock: another
# thread's warnings.catch_warnings() exit could otherwise restore filters mid-read and let a
# pydicom warning quoting a tag value reach stderr.
DECODE_LOCK = threading.RLock()
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class Window:
    """A VOI window: centre and width (in modality units, e.g. HU) and the name it was given."""

    centre: float
    width: float
    name: str

    def describe(self) -> str:
        """E.g. 'lung (C -600, W 1500)'."""
        return f"{self.name} (C {self.centre:g}, W {self.width:g})"


@dataclass(frozen=True)
class DicomImage:
    """One decoded frame and how it was rendered (no patient data)."""

    image: Image.Image  # 8-bit "L" or "RGB"
    frame: int  # 0-based
    frames: int
    photometric: str
    rendering: str  # how the values were mapped to 8 bits
    notes: tuple[str, ...] = ()


def parse_window(spec: str) -> Window:
    """A preset name (lung, mediastinum, bone, brain, abdomen) or 'CENTRE,WIDTH' (e.g. '40,400').

    Raises `ImageError` for anything else, for non-finite numbers, or a width below 1
    (PS3.3 C.11.2.1.2 requires width >= 1).
    """
    text = spec.strip().lower()
    if text in WINDOW_PRESETS:
        centre, width = WINDOW_PRESETS[text]
        return Window(centre, width, text)
    hint = f"use one of {', '.join(WINDOW_PRESETS)} or CENTRE,WIDTH such as 40,400"
    parts = text.split(",")
    if len(parts) != 2:
        raise ImageError(f"unknown window {spec[:40]!r}: {hint}")
    try:
        centre, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise ImageError(f"window {spec[:40]!r} is not two numbers: {hint}") from None
    if not (math.isfinite(centre) and math.isfinite(width)):
        raise ImageError(f"window {spec[:40]!r} must be finite numbers")
    if width < 1:
        raise ImageError(f"window width must be at least 1, got {width:g}")
    return Window(centre, width, f"{centre:g},{width:g}")


def is_dicom(data: bytes) -> bool:
    """True for a DICOM Part 10 file (128-byte preamble then 'DICM')."""
    return len(data) >= 132 and data[128:132] == b"DICM"


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's logger and warnings, which can quote tag values (patient data)."""
    logger = logging.getLogger("pydicom")
    with DECODE_LOCK:
        previous = logger.disabled
        logger.disabled = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            logger.disabled = previous


def read_dataset(data: bytes, label: str, max_bytes: int, *, stop_before_pixels: bool = False):  # noqa: ANN201
    """Parse DICOM bytes with pydicom; `ImageError` (no tag values) when they cannot be parsed."""
    import pydicom

    _check_deflate_size(data, label, max_bytes)
    with quiet_pydicom():
        try:
            return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed input; all mean
            # "unreadable", and their messages can quote tag values, so only the type is passed on.
            raise ImageError(f"{label}: DICOM file is truncated or corrupt ({type(exc).__name__})") from None


def decode_dicom(
    data: bytes,
    label: str,
    *,
    window: str | None = None,
    frame: int | None = None,
    max_pixels: int = 64_000_000,
    max_bytes: int = 64 * 1024 * 1024,
) -> DicomImage:
    """Decode one frame of a DICOM file to an 8-bit PIL image.

    `window`: preset name or 'C,W' (greyscale only); None uses the file's VOI LUT, else its
    first window, else the full range. `frame`: 0-based; None picks the middle frame.
    Raises `ImageError` (naming `label`, never a tag value) for files without pixel data,
    bad frame numbers, images over `max_pixels`, missing decoder plugins and corrupt data.
    """
    chosen = parse_window(window) if window is not None else None
    ds = read_dataset(data, label, max_bytes)
    with quiet_pydicom():
        try:
            return _render(ds, label, chosen, frame, max_pixels)
        except ImageError:
            raise
        except MemoryError:
            raise ImageError(f"{label}: DICOM pixel data too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - as in read_dataset: malformed files fail in many ways
            raise ImageError(f"{label}: DICOM pixel data is truncated or corrupt ({type(exc).__name__})") from None


def _render(ds, label: str, window: Window | None, frame: int | None, max_pixels: int) -> DicomImage:  # noqa: ANN001
    from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise ImageError(f"{label}: DICOM file has no pixel data (it is not an image object)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (AttributeError, TypeError, ValueError):
        raise ImageError(
            f"{label}: DICOM image attributes (Rows, Columns, NumberOfFrames) are missing or invalid"
        ) from None
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise ImageError(f"{label}: DICOM image has zero rows, columns or frames")
    if rows * cols > max_pixels:
        raise ImageError(f"{label}: {cols}x{rows} pixels exceeds the limit of {max_pixels} pixels")
    index = frames // 2 if frame is None else frame
    if not 0 <= index < frames:
        raise ImageError(f"{label}: frame {frame} is out of range; the file has {frames} frame(s), 0 to {frames - 1}")
    _check_decoder(ds, label)

    photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    notes: list[str] = []
    if frames > 1:
        how = "the middle one; choose with --frame" if frame is None else "as asked"
        notes.append(f"{label}: multi-frame DICOM with {frames} frames; using frame {index} ({how})")
    try:
        arr = pixel_array(ds, index=index if frames > 1 else None)
    except RuntimeError as exc:  # pydicom: every available plugin failed; its text names plugins only
        raise ImageError(f"{label}: {_decoder_failure(ds, exc)}") from None
    if arr.ndim == 3 and samples == 1:  # some files report frames pydicom still returns stacked
        arr = arr[0]

    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        image = _to_uint8(rgb, 0.0, float(2**bits - 1))
        rendering = f"palette colour lookup table ({bits}-bit)"
    elif samples >= 3 or arr.ndim == 3:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
        image = _to_uint8(arr, 0.0, float(2**bits - 1))
        rendering = f"colour ({photometric}, {bits}-bit)"
    else:
        values = apply_modality_lut(arr, ds).astype(np.float64)
        grey, rendering = _voi(values, ds, window, label, notes)
        if photometric == "MONOCHROME1":
            grey = 255 - grey
            rendering += ", MONOCHROME1 inverted"
        image = grey
    if window is not None and (photometric == "PALETTE COLOR" or samples >= 3):
        notes.append(f"{label}: window {window.name} ignored: it applies to greyscale images only")
    mode = "RGB" if image.ndim == 3 else "L"
    return DicomImage(Image.fromarray(image, mode=mode), index, frames, photometric, rendering, tuple(notes))


def _voi(values: np.ndarray, ds, window: Window | None, label: str, notes: list[str]) -> tuple[np.ndarray, str]:  # noqa: ANN001
    """Greyscale values after the Modality LUT -> 8 bits, by the chosen VOI transform."""
    from pydicom.pixels import apply_voi

    if window is not None:
        return _apply_window(values, window.centre, window.width, "LINEAR"), f"window {window.describe()}"
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        out = apply_voi(values.astype(np.int64), ds, index=0)
        return _to_uint8(out, 0.0, float(2**bits - 1)), "the file's VOI LUT"
    centres, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centres is not None and widths is not None:
        centre = float(centres[0] if _is_multi(centres) else centres)
        width = float(widths[0] if _is_multi(widths) else widths)
        if _is_multi(centres) and len(centres) > 1:
            notes.append(f"{label}: the file offers {len(centres)} windows; using the first (or choose with --window)")
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
        if math.isfinite(centre) and math.isfinite(width) and width >= (1 if function == "LINEAR" else 1e-9):
            return _apply_window(values, centre, width, function), f"the file's window (C {centre:g}, W {width:g})"
        notes.append(f"{label}: the file's window is invalid; showing the full range")
    lo, hi = float(np.min(values)), float(np.max(values))
    return _to_uint8(values, lo, hi), "full range (min-max; no window in the file)"


def _apply_window(values: np.ndarray, centre: float, width: float, function: str) -> np.ndarray:
    # pydicom's apply_windowing maps to the stored bit range, not 0-255, so PS3.3 C.11.2.1.2 is written out here.
    if function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (values - centre) / width, -700, 700)))
    elif function == "LINEAR_EXACT":
        out = np.clip((values - centre) / width + 0.5, 0.0, 1.0) * 255.0
    else:  # LINEAR
        lower = centre - 0.5 - (width - 1) / 2
        upper = centre - 0.5 + (width - 1) / 2
        ramp = ((values - (centre - 0.5)) / max(width - 1, 1e-12) + 0.5) * 255.0
        out = np.where(values <= lower, 0.0, np.where(values > upper, 255.0, ramp))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not hi > lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, lo, hi) - lo) / (hi - lo) * 255.0
    return np.round(scaled).astype(np.uint8)


def _is_multi(value) -> bool:  # noqa: ANN001
    return not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__len__")


def _check_decoder(ds, label: str) -> None:  # noqa: ANN001
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageError(f"{label}: pydicom has no decoder for transfer syntax {syntax.name} ({syntax})") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise ImageError(
            f"{label}: pixel data is compressed as {syntax.name} and no installed plugin can decode it; "
            f"install one of these decoder plugins: {missing} (e.g. `pip install pylibjpeg pylibjpeg-libjpeg`)"
        )


def _decoder_failure(ds, exc: RuntimeError) -> str:  # noqa: ANN001
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    reason = " ".join(str(exc).split())[:300]
    if syntax is None or not syntax.is_compressed:
        return f"pixel data could not be decoded ({reason})"
    others = "; ".join(get_decoder(syntax).missing_dependencies) or "none known"
    return f"no installed plugin could decode this {syntax.name} pixel data ({reason}); other decoder plugins: {others}"


def _check_deflate_size(data: bytes, label: str, max_bytes: int) -> None:
    """Refuse deflated datasets that inflate past `max_bytes` (pydicom inflates without a bound)."""
    start = _dataset_offset(data)
    if start is None or _DEFLATED.encode() not in data[132:start]:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data[start:], max_bytes + 1)
    except zlib.error:
        raise ImageError(f"{label}: deflated DICOM data is corrupt") from None
    if len(inflated) > max_bytes:
        raise ImageError(
            f"{label}: deflated DICOM data inflates past the limit of {max_bytes} bytes (decompression bomb guard)"
        )


def _dataset_offset(data: bytes) -> int | None:
    # pydicom exposes no public "where does the dataset start" helper; the file meta group
    # (0002,xxxx) is always explicit VR little endian, so walk its elements.
    pos = 132
    long_vrs = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UR", b"UT", b"UN", b"SV", b"UV"}
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        vr = data[pos + 4 : pos + 6]
        if vr in long_vrs:
            if pos + 12 > len(data):
                return None
            length = int.from_bytes(data[pos + 8 : pos + 12], "little")
            pos += 12 + length
        else:
            length = int.from_bytes(data[pos + 6 : pos + 8], "little")
            pos += 8 + length
    return pos if pos <= len(data) else None
