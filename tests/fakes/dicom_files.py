"""Small synthetic DICOM files for tests that send images through the API or the web chat."""

from __future__ import annotations

import io

import numpy as np


def greyscale_dicom_bytes(frames: int | None = None) -> bytes:
    """A 32x48 12-bit MONOCHROME2 DICOM (explicit VR little endian, Part 10 header), pixel values a ramp.

    `frames` sets NumberOfFrames (a multi-frame file); None writes a plain single-frame file without it.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "OT", 32, 48
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange((frames or 1) * 32 * 48, dtype=np.uint16) % 4096).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
