"""Readers for the benchmarks' public on-disk formats -> `EvalSample`s.

Every reader takes the path the user gave, checks what it needs is there, and raises
`EvalDataError` naming the exact file or folder to provide. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EvalDataError
from ..fileio import iter_jsonl
from ..types import ImageRef


@dataclass(frozen=True)
class EvalSample:
    """One benchmark item: question/prompt text, images, reference answer and metadata."""

    id: str
    text: str
    reference: str
    images: tuple[ImageRef, ...] = ()
    language: str = "en"
    meta: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Path, dict[str, Any]], list[EvalSample]]
READERS: dict[str, Reader] = {}


def reader(name: str) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return register


def read_dataset(fmt: str, path: Path | None, options: dict[str, Any], task: str) -> list[EvalSample]:
    """Read a dataset in format `fmt` from `path`."""
    if path is None:
        raise EvalDataError(f"task {task!r} needs its data: pass --data {task}=PATH")
    path = Path(path).expanduser()
    if not path.exists():
        raise EvalDataError(f"task {task!r}: data path {path} does not exist; provide the dataset there")
    if fmt not in READERS:
        raise EvalDataError(f"task {task!r}: unknown dataset format {fmt!r} (known: {', '.join(sorted(READERS))})")
    samples = READERS[fmt](path, options)
    if not samples:
        raise EvalDataError(f"task {task!r}: no test samples found in {path} (format {fmt})")
    return samples


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise EvalDataError(f"missing {what}: {path}")
    return path


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path}: not valid JSON ({exc})") from exc


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-empty line; a bad line raises naming file and line."""
    yield from iter_jsonl(_need(path, "JSONL file"), EvalDataError)


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise EvalDataError(f"{where}: missing field {key!r}")
    return record[key]


# ------------------------------------------------------------------------------------ VQA
@reader("vqa-rad-json")
def read_vqa_rad(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """VQA-RAD's OSF release: `VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`;
    the test set is phrase_type test_freeform / test_para."""
    root = path.parent if path.is_file() else path
    json_path = path if path.is_file() else _need(root / "VQA_RAD Dataset Public.json", "VQA-RAD JSON")
    images = _need(root / "VQA_RAD Image Folder", "VQA-RAD image folder")
    out = []
    for i, rec in enumerate(_load_json(json_path)):
        where = f"{json_path} record {i}"
        if not str(rec.get("phrase_type", "")).startswith("test"):
            continue
        out.append(
            EvalSample(
                id=f"vqa-rad-{_field(rec, 'qid', where)}",
                text=str(_field(rec, "question", where)),
                reference=str(_field(rec, "answer", where)),
                images=(ImageRef(images / str(_field(rec, "image_name", where))),),
                meta={"answer_type": str(rec.get("answer_type", "")).upper(), "organ": rec.get("image_organ", "")},
            )
        )
    return out


@reader("slake-json")
def read_slake(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """SLAKE 1.0: `test.json` + `imgs/<img_name>`; `languages` keeps q_lang (MultiMedEval: en only)."""
    root = path.parent if path.is_file() else path
    json_path = path if path.is_file() else _need(root / "test.json", "SLAKE test.json")
    images = _need(root / "imgs", "SLAKE image folder")
    languages = set(options.get("languages", ["en"]))
    out = []
    for i, rec in enumerate(_load_json(json_path)):
        where = f"{json_path} record {i}"
        lang = str(_field(rec, "q_lang", where))
        if lang not in languages:
            continue
        out.append(
            EvalSample(
                id=f"slake-{_field(rec, 'qid', where)}",
                text=str(_field(rec, "question", where)),
                reference=str(_field(rec, "answer", where)),
                images=(ImageRef(images / str(_field(rec, "img_name", where))),),
                language=lang,
                meta={"answer_type": str(rec.get("answer_type", "")).upper(), "modality": rec.get("modality", "")},
            )
        )
    return out


class _PlainUnpickler(pickle.Unpickler):
    """Path-VQA ships pickles of plain lists/dicts/strings: refuse anything that would run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is allowed")


@reader("pathvqa-pkl")
def read_path_vqa(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """Path-VQA's release: `qas/test/test_qa.pkl` (list of {image, question, answer}) + `images/test/<image>.jpg`."""
    qa = _need(path / "qas" / "test" / "test_qa.pkl", "Path-VQA test QA pickle")
    images = _need(path / "images" / "test", "Path-VQA test image folder")
    try:
        records = _PlainUnpickler(io.BytesIO(qa.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise EvalDataError(f"{qa}: not a plain-data pickle ({exc})") from exc
    out = []
    for i, rec in enumerate(records):
        where = f"{qa} record {i}"
        answer = str(_field(rec, "answer", where))
        out.append(
            EvalSample(
                id=f"path-vqa-{i}",
                text=str(_field(rec, "question", where)),
                reference=answer,
                images=(ImageRef(images / f"{_field(rec, 'image', where)}.jpg"),),
                # Path-VQA has no answer_type field; its closed questions are the yes/no ones
                meta={"answer_type": "CLOSED" if answer.lower().strip() in ("yes", "no") else "OPEN"},
            )
        )
    return out


@reader("hf-vqa-parquet")
def read_hf_vqa_parquet(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """The Hugging Face copies MultiMedEval loads (flaviagiammarino/vqa-rad, /path-vqa):
    `data/test-*.parquet` with columns image{bytes,path}, question, answer."""
    import pyarrow.parquet as pq

    files = sorted(path.glob("data/test-*.parquet")) if path.is_dir() else [path]
    if not files:
        raise EvalDataError(f"no test parquet files under {path / 'data'} (expected data/test-*.parquet)")
    prefix = options.get("id_prefix", path.name)
    out = []
    for file in files:
        for i, row in enumerate(pq.read_table(file).to_pylist()):
            where = f"{file} row {i}"
            image = _field(row, "image", where)
            answer = str(_field(row, "answer", where))
            out.append(
                EvalSample(
                    id=f"{prefix}-{file.stem}-{i}",
                    text=str(_field(row, "question", where)),
                    reference=answer,
                    images=(ImageRef(image["bytes"], name=f"{file.name}#{i}"),),
                    meta={"answer_type": ""},
                )
            )
    return out


# ---------------------------------------------------------------------- report generation
_SECTION = re.compile(r"^\s*([A-Z][A-Z /()&,-]+):", re.MULTILINE)


def report_section(report: str, name: str) -> str:
    """Text of the `NAME:` section of a MIMIC-CXR free-text report ('' when absent)."""
    heads = list(_SECTION.finditer(report))
    for k, head in enumerate(heads):
        if head.group(1).strip().upper() == name.upper():
            end = heads[k + 1].start() if k + 1 < len(heads) else len(report)
            return " ".join(report[head.end() : end].split())
    return ""


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


@reader("mimic-cxr")
def read_mimic_cxr(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """MIMIC-CXR-JPG layout: `mimic-cxr-2.0.0-split.csv(.gz)` + `files/pXX/pSUBJECT/sSTUDY/DICOM.jpg`,
    reports from mimic-cxr-reports at `files/pXX/pSUBJECT/sSTUDY.txt` (or `reports_root`).
    One sample per test study with a FINDINGS section; every image of the study is attached."""
    split_file = next(
        (p for p in (path / "mimic-cxr-2.0.0-split.csv.gz", path / "mimic-cxr-2.0.0-split.csv") if p.exists()), None
    )
    if split_file is None:
        raise EvalDataError(f"missing MIMIC-CXR split file: {path / 'mimic-cxr-2.0.0-split.csv.gz'}")
    reports_root = Path(options.get("reports_root") or path)
    max_images = int(options.get("max_images", 8))
    studies: dict[tuple[str, str], list[str]] = {}
    with _open_text(split_file) as handle:
        for row in csv.DictReader(handle):
            if row.get("split") == "test":
                studies.setdefault((row["subject_id"], row["study_id"]), []).append(row["dicom_id"])
    out = []
    for (subject, study), dicoms in sorted(studies.items()):
        folder = f"files/p{subject[:2]}/p{subject}"
        report_path = _need(reports_root / folder / f"s{study}.txt", "MIMIC-CXR report")
        findings = report_section(report_path.read_text(encoding="utf-8"), "FINDINGS")
        if not findings:
            continue  # studies without a findings section are not scored (as in MultiMedEval)
        images = tuple(
            ImageRef(_need(path / folder / f"s{study}" / f"{d}.jpg", "MIMIC-CXR image"))
            for d in sorted(dicoms)[:max_images]
        )
        out.append(EvalSample(id=f"mimic-cxr-s{study}", text="", reference=findings, images=images))
    return out


@reader("summarization-pairs")
def read_summarization(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """MIMIC-III findings -> impression, as line-aligned `test.findings.tok` / `test.impression.tok`
    (the RadSum23 / BioNLP-2023 release) or a JSONL of {id?, findings, impression}."""
    if path.is_file():
        out = []
        for lineno, rec in read_jsonl(path):
            where = f"{path}:{lineno}"
            out.append(
                EvalSample(
                    id=str(rec.get("id", f"mimic-iii-{lineno}")),
                    text=str(_field(rec, "findings", where)),
                    reference=str(_field(rec, "impression", where)),
                    meta={k: rec[k] for k in ("modality", "anatomy") if k in rec},
                )
            )
        return out
    findings = (
        _need(path / "test.findings.tok", "MIMIC-III test findings file").read_text(encoding="utf-8").splitlines()
    )
    impressions = (
        _need(path / "test.impression.tok", "MIMIC-III test impression file").read_text(encoding="utf-8").splitlines()
    )
    if len(findings) != len(impressions):
        raise EvalDataError(
            f"{path}: test.findings.tok has {len(findings)} lines but test.impression.tok has {len(impressions)}"
        )
    return [
        EvalSample(id=f"mimic-iii-{i}", text=f.strip(), reference=imp.strip())
        for i, (f, imp) in enumerate(zip(findings, impressions, strict=True))
        if f.strip()
    ]
