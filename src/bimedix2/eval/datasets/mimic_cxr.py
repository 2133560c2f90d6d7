"""MIMIC-CXR report generation test set, and the MIMIC-CXR report section parser MultiMedEval uses."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import EvalDataError
from ...types import ImageRef
from .base import EvalSample, get_field, need, open_text, reader

# MIMIC-CXR report sections exactly as MultiMedEval reads them: `section_text` of multimedeval/utils.py,
# itself the MIMIC-CXR code's `section_text` (MIT-LCP/mimic-cxr, txt/section_parser.py, used by
# create_section_files.py). Hand-ported because neither is an installable library.
_CXR_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s", re.DOTALL)
_CXR_FREQUENT_SECTIONS = {
    "preamble": "preamble",
    "impression": "impression",
    "comparison": "comparison",
    "indication": "indication",
    "findings": "findings",
    "examination": "examination",
    "technique": "technique",
    "history": "history",
    "comparisons": "comparison",
    "clinical history": "history",
    "reason for examination": "indication",
    "notification": "notification",
    "reason for exam": "indication",
    "clinical information": "history",
    "exam": "examination",
    "clinical indication": "indication",
    "conclusion": "impression",
    "chest, two views": "findings",
    "recommendation(s)": "recommendations",
    "type of examination": "examination",
    "reference exam": "comparison",
    "patient history": "history",
    "addendum": "addendum",
    "comparison exam": "comparison",
    "date": "date",
    "comment": "comment",
    "findings and impression": "impression",
    "wet read": "wet read",
    "comparison film": "comparison",
    "recommendations": "recommendations",
    "findings/impression": "impression",
    "pfi": "history",
    "recommendation": "recommendations",
    "wetread": "wet read",
    "ndication": "impression",
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
    "findings/ impression": "impression",
    "finding": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "idication": "indication",
    "reference findings": "findings",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "comparisions": "comparison",
}
_CXR_MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
_CXR_FINDINGS_LIKE = re.compile(
    "(chest|portable|pa and lateral|lateral and pa|ap and lateral|lateral and ap|frontal and|two views|"
    "frontal view|pa view|ap view|one view|lateral view|bone window|frontal upright|frontal semi-upright|"
    "ribs|pa and lat)"
)


def _cxr_section_name(raw: str) -> str:
    name = raw.lower().strip()
    if name in _CXR_FREQUENT_SECTIONS:
        return _CXR_FREQUENT_SECTIONS[name]
    main = next((m for m in _CXR_MAIN_SECTIONS if m in name), None)
    if main is not None:
        return main
    return "findings" if _CXR_FINDINGS_LIKE.search(name) else name


def split_at_headers(text: str, preamble_from: int = 0) -> tuple[list[str], list[str], list[int]]:
    """(raw sections, lower-cased header names, start offsets), split where both MultiMedEval section parsers
    split: at each `_CXR_HEADER`, the next search starting after the first newline of the section; the text
    before the first header (from `preamble_from`) is the "preamble"; no header: one "full report"."""
    match = _CXR_HEADER.search(text, 0)
    if not match:
        return [text], ["full report"], [0]
    sections, names, starts = [text[preamble_from : match.start(1)]], ["preamble"], [0]
    while match:
        name = match.group(1).lower()
        start = match.end()
        skip = text[start:].find("\n")
        match = _CXR_HEADER.search(text, start + max(skip, 0))
        sections.append(text[start : match.start() if match else len(text)])
        names.append(name)
        starts.append(start)
    return sections, names, starts


def section_text(text: str) -> tuple[list[str], list[str], list[int]]:
    """(sections, normalised section names, start offsets) of a MIMIC-CXR free-text report.

    Same rules as the MIMIC-CXR code's `section_text` (and MultiMedEval's copy): a header is an
    upper-case line `\\n NAME: `; the text before the first header is the "preamble"; the search for
    the next header starts after the first newline of a section; names are normalised
    (`_CXR_FREQUENT_SECTIONS`, then a main-section substring, then findings-like view names); empty
    findings/impression sections are dropped; with neither, the last paragraph becomes
    "last_paragraph". Section texts are returned raw (newlines and spaces kept)."""
    sections, names, starts = split_at_headers(text)
    names = [_cxr_section_name(n) for n in names]
    for i in reversed(range(len(names))):
        if names[i] in ("impression", "findings") and not sections[i].strip():
            del sections[i], names[i], starts[i]
    if "impression" not in names and "findings" not in names and "\n \n" in sections[-1]:
        first, *rest = sections[-1].split("\n \n")
        sections[-1] = first
        sections.append("\n \n".join(rest))
        names.append("last_paragraph")
        starts.append(starts[-1] + len(first))
    return sections, names, starts


def report_section(report: str, name: str) -> str:
    """Raw text of the first section normalised to `name` ("findings", "indication", ...) of a MIMIC-CXR
    report as `section_text` splits it; '' when absent."""
    sections, names, _ = section_text(report)
    return sections[names.index(name.lower())] if name.lower() in names else ""


CXR_SPLIT_NAMES = ("mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-split.csv.gz")


def _mimic_cxr_root(path: Path) -> Path:
    """The folder holding the split file: `path` itself or MultiMedEval's `path/mimic-cxr-jpg/2.0.0`."""
    for root in (path, path / "mimic-cxr-jpg" / "2.0.0"):
        if any((root / name).is_file() for name in CXR_SPLIT_NAMES):
            return root
    raise EvalDataError(
        f"missing MIMIC-CXR split file: {path / CXR_SPLIT_NAMES[0]} (or .gz, or under {path / 'mimic-cxr-jpg/2.0.0'})"
    )


@dataclass(frozen=True)
class MimicCXROptions:
    """`mimic-cxr` options."""

    include_indication: bool = False  # MultiMedEval's include_indication: the indication + " " first
    max_images: int | None = None  # cap images per study (MultiMedEval sends them all)
    reports_root: Path | None = None  # where files/pXX/pSUBJECT/sSTUDY.txt live (default: the data folder)


@reader("mimic-cxr", MimicCXROptions)
def read_mimic_cxr(path: Path, options: MimicCXROptions) -> list[EvalSample]:
    """MIMIC-CXR-JPG 2.0.0: `mimic-cxr-2.0.0-split.csv(.gz)` + `files/pXX/pSUBJECT/sSTUDY/DICOM.jpg`, with
    the reports of MIMIC-CXR (`mimic-cxr-reports.zip`) at `files/pXX/pSUBJECT/sSTUDY.txt` (or under the
    `reports_root` option).

    As MultiMedEval (multimedeval/mimic.py `MIMICCXRReportgen.setup` / `format_question`): the test
    rows of the split file in file order; a study whose report has no "findings" section (per
    `section_text`) is skipped; one sample per study (duplicates dropped) with every image of the study,
    in split-file order; gold = the raw findings section text. The question is "" -- or, with option
    `include_indication: true` (MultiMedEval's `include_indication`, off by default), the raw
    indication section + " " -- and the task prompt appends MultiMedEval's request. `max_images`
    (default: all, as MultiMedEval) caps the images of a study."""
    root = _mimic_cxr_root(path)
    split_file = next(root / n for n in CXR_SPLIT_NAMES if (root / n).is_file())
    reports_root = Path(options.reports_root or root).expanduser()
    max_images = options.max_images
    include_indication = options.include_indication
    studies: dict[str, tuple[str, list[str]]] = {}
    with open_text(split_file) as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            for key in ("dicom_id", "study_id", "subject_id", "split"):
                get_field(row, key, f"{split_file} row {i + 2}")
            if row["split"] == "test":
                studies.setdefault(row["study_id"], (row["subject_id"], []))[1].append(row["dicom_id"])
    out = []
    for study, (subject, dicoms) in studies.items():
        folder = f"files/p{subject[:2]}/p{subject}"
        report = need(reports_root / folder / f"s{study}.txt", "MIMIC-CXR report").read_text(encoding="utf-8")
        sections, names, _ = section_text(report)
        if "findings" not in names:
            continue  # MultiMedEval scores only studies whose report has a findings section
        indication = sections[names.index("indication")] if "indication" in names else ""
        kept = dicoms if max_images is None else dicoms[: int(max_images)]
        images = tuple(ImageRef(need(root / folder / f"s{study}" / f"{d}.jpg", "MIMIC-CXR image")) for d in kept)
        out.append(
            EvalSample(
                id=f"mimic-cxr-s{study}",
                text=indication + " " if include_indication else "",
                reference=sections[names.index("findings")],
                images=images,
            )
        )
    return out
