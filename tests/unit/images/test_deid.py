"""De-identification per the PS3.15 basic profile, on pydicom's test files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from bimedix2.dicom import deidentify, deidentify_file
from bimedix2.errors import ImageError

FILES = ["CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "rtplan.dcm", "test-SR.dcm"]


def _phi(ds: pydicom.Dataset) -> list[str]:
    """Identifying strings present in a file: names, IDs, dates, institution."""
    values = []
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyDate",
        "ReferringPhysicianName",
        "AccessionNumber",
        "OperatorsName",
    ):
        value = str(ds.get(keyword, "") or "").strip()
        if len(value) >= 3:
            values.append(value)
    return values


@pytest.mark.parametrize("name", FILES)
def test_basic_profile_removes_identifiers_everywhere(name: str) -> None:
    original = pydicom.dcmread(get_testdata_file(name))
    phi = _phi(original)
    assert phi, "test file should carry some identifying strings"
    clean, report = deidentify(original, uid_secret=b"secret")
    buf = io.BytesIO()
    clean.save_as(buf)
    raw = buf.getvalue()
    for value in phi:
        assert value.encode() not in raw, f"{value!r} survived de-identification"
    # Type 2 attributes stay present but empty; dates, private tags and comments go.
    assert "PatientName" in clean and not clean.PatientName and not clean.PatientID
    assert not any(elem.tag.is_private for elem in clean.iterall())
    assert not any(elem.VR == "PN" and elem.value for elem in clean.iterall())
    assert not any(elem.VR in ("DA", "DT", "TM") and elem.value for elem in clean.iterall())
    assert "InstitutionName" not in clean and "InstitutionAddress" not in clean  # (Manufacturer is kept)
    assert clean.PatientIdentityRemoved == "YES"
    assert clean.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert "PatientName" in report.emptied
    # The original is untouched.
    assert str(original.PatientName) == str(pydicom.dcmread(get_testdata_file(name)).PatientName)


def test_uids_are_replaced_consistently_and_class_uids_kept() -> None:
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    first, report = deidentify(ct, uid_secret=b"k")
    again, _ = deidentify(ct, uid_secret=b"k")
    other, _ = deidentify(ct, uid_secret=b"other")
    assert report.uids_replaced >= 3
    assert first.StudyInstanceUID != ct.StudyInstanceUID
    assert first.StudyInstanceUID == again.StudyInstanceUID != other.StudyInstanceUID
    assert first.SOPClassUID == ct.SOPClassUID  # CT Image Storage is a standard class UID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID


def test_overlay_data_and_comments_are_removed() -> None:
    ds = pydicom.dcmread(get_testdata_file("examples_overlay.dcm"))
    assert 0x60003000 in ds
    clean, _ = deidentify(ds)
    assert 0x60003000 not in clean and 0x60000010 in clean  # Overlay Rows: geometry is not identifying


def test_private_tags_in_nested_sequences_are_removed() -> None:
    ds = pydicom.dcmread(get_testdata_file("nested_priv_SQ.dcm"))
    assert any(elem.tag.is_private for elem in ds.iterall())
    clean, report = deidentify(ds)
    assert report.private_removed > 0
    assert not any(elem.tag.is_private for elem in clean.iterall())


def test_pixels_are_unchanged_and_still_load(tmp_path: Path) -> None:
    from bimedix2.images import load_image

    src = Path(get_testdata_file("CT_small.dcm"))
    dst = tmp_path / "anon.dcm"
    report = deidentify_file(src, dst, uid_secret=b"s")
    assert "BurnedInAnnotation absent" in report.summary()
    assert (np.asarray(load_image(dst)) == np.asarray(load_image(src))).all()
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ImageError, match="writes a new file"):
        deidentify_file(dst, dst)


@pytest.mark.parametrize(("flag", "review"), [("YES", True), ("NO", False), (None, True)])
def test_burned_in_annotation_is_reported(flag: str | None, review: bool) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    if flag is not None:
        ds.BurnedInAnnotation = flag
        ds.RecognizableVisualFeatures = "NO"
    _, report = deidentify(ds)
    assert report.burned_in_annotation == flag
    assert report.pixels_need_review is review
    assert report.recognizable_visual_features == ("NO" if flag else None)
    assert str(ds.PatientName) not in report.summary()


def test_profile_tables_hold_only_real_dicom_keywords() -> None:
    from pydicom.datadict import tag_for_keyword

    from bimedix2.dicom import DEID_EMPTY, DEID_REMOVE

    assert len(DEID_REMOVE) > 400 and len(DEID_EMPTY) > 40 and not DEID_EMPTY & DEID_REMOVE
    assert [k for k in sorted(DEID_EMPTY | DEID_REMOVE) if tag_for_keyword(k) is None] == []


def _file_with_invalid_phi() -> bytes:
    """MR_small with invalid patient values of the kind pydicom's validation quotes in warnings."""
    from pydicom import config

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    modes = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.settings.writing_validation_mode = config.IGNORE
    try:
        ds.add_new("PatientAge", "AS", "SECRETAGE")
        ds.add_new("PatientSex", "CS", "secret sex")
        buf = io.BytesIO()
        ds.save_as(buf)
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = modes
    return buf.getvalue()


def test_pydicom_quotes_invalid_values_in_warnings() -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    with pytest.warns(UserWarning, match="SECRETAGE"):
        ds.PatientAge = "SECRETAGE"  # why every pydicom call here runs with its warnings silenced


def test_deidentify_and_loading_log_and_warn_nothing_about_values(capfd, caplog) -> None:  # noqa: ANN001
    import warnings

    from bimedix2.images import load_image

    data = _file_with_invalid_phi()
    capfd.readouterr()
    caplog.clear()
    with caplog.at_level("DEBUG"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clean, _ = deidentify(pydicom.dcmread(io.BytesIO(data)))
        load_image(data)
    out, err = capfd.readouterr()
    said = out + err + " ".join(r.getMessage() for r in caplog.records) + " ".join(str(w.message) for w in caught)
    assert "SECRETAGE" not in said and "secret sex" not in said
    assert "PatientAge" not in clean and not clean.PatientSex
