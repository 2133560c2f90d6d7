"""DICOM: decoding one frame to 8 bits with windowing (`decode`), and de-identification (`deid`).

Patient data never leaves this package in a message: errors name the image's label and the
problem, never a tag value.
"""

from .decode import (
    DECODE_LOCK,
    WINDOW_PRESETS,
    DicomImage,
    Window,
    decode_dicom,
    is_dicom,
    parse_window,
    quiet_pydicom,
    read_dataset,
)
from .deid import DEID_EMPTY, DEID_REMOVE, DeidReport, deidentify, deidentify_file

__all__ = [
    "DECODE_LOCK",
    "DEID_EMPTY",
    "DEID_REMOVE",
    "WINDOW_PRESETS",
    "DeidReport",
    "DicomImage",
    "Window",
    "decode_dicom",
    "deidentify",
    "deidentify_file",
    "is_dicom",
    "parse_window",
    "quiet_pydicom",
    "read_dataset",
]
