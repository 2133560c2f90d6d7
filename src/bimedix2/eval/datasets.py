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

from tqdm.auto import tqdm

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
# MultiMedEval (corentin-ryr/MultiMedEval, multimedeval/vqa.py) does not read the original releases of
# VQA-RAD and Path-VQA: it loads the Hugging Face copies `flaviagiammarino/vqa-rad` and
# `flaviagiammarino/path-vqa` (split "test"). Those copies were built from the original files by each
# repository's `scripts/processing.py`: drop duplicate (image, question, answer) triplets, then
# normalise question and answer with `hf_copy_clean`. Reading the original files we apply the same two
# steps, so the samples and answer strings equal MultiMedEval's; the gold answer stays that string
# (MultiMedEval's yes/no prompt rule looks at it before `.lower().strip()`).


def hf_copy_clean(value: Any) -> str:
    """flaviagiammarino's clean-up (vqa-rad / path-vqa `scripts/processing.py`): lower-case, runs of
    spaces -> one, " ?" -> "?", strip."""
    return re.sub(" +", " ", str(value).lower()).replace(" ?", "?").strip()


def _first_of_each(records: list[dict[str, Any]], keys: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Keep the first of records equal on `keys` (all fields when None), as pandas `drop_duplicates`."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for rec in records:
        fields = keys if keys is not None else tuple(sorted(rec))
        key = tuple((k, type(rec.get(k)).__name__, repr(rec.get(k))) for k in fields)
        if key not in seen:
            seen.add(key)
            out.append(rec)
    return out


VQA_RAD_TEST_PHRASES = ("test_freeform", "test_para")


@reader("vqa-rad-json")
def read_vqa_rad(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """VQA-RAD's OSF release: `VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`.

    Test set as the `flaviagiammarino/vqa-rad` test split MultiMedEval loads (451 questions):
    phrase_type test_freeform / test_para, duplicate (image_name, question, answer) triplets dropped,
    question and answer through `hf_copy_clean`. `answer_type` (absent from the HF copy) is kept as
    metadata for the improved mode only."""
    root = path.parent if path.is_file() else path
    json_path = path if path.is_file() else _need(root / "VQA_RAD Dataset Public.json", "VQA-RAD JSON")
    images = _need(root / "VQA_RAD Image Folder", "VQA-RAD image folder")
    records = _load_json(json_path)
    if not isinstance(records, list):
        raise EvalDataError(f"{json_path}: expected a JSON list of question records")
    test = []
    for i, rec in enumerate(records):
        where = f"{json_path} record {i}"
        if _field(rec, "phrase_type", where) in VQA_RAD_TEST_PHRASES:
            for key in ("image_name", "question", "answer", "qid"):
                _field(rec, key, where)
            test.append(rec)
    return [
        EvalSample(
            id=f"vqa-rad-{rec['qid']}",
            text=hf_copy_clean(rec["question"]),
            reference=hf_copy_clean(rec["answer"]),
            images=(ImageRef(images / str(rec["image_name"])),),
            meta={"answer_type": str(rec.get("answer_type", "")).upper(), "organ": rec.get("image_organ", "")},
        )
        for rec in _first_of_each(test, ("image_name", "question", "answer"))
    ]


@reader("slake-json")
def read_slake(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """SLAKE 1.0 (also the `BoKelvin/SLAKE` copy MultiMedEval loads): `test.json` + `imgs/<img_name>`.

    MultiMedEval (multimedeval/vqa.py `SLAKE.setup`) keeps the test questions with q_lang "en" and
    takes question and answer as they are (its gold is `answer.lower().strip()`, applied at scoring);
    `languages` can add "zh" for our own runs."""
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
    """Path-VQA's release (`pvqa/`): `qas/test/test_qa.pkl` (list of {image, question, answer}) +
    `images/test/<image>.jpg`.

    Test set as the `flaviagiammarino/path-vqa` test split MultiMedEval loads: duplicate records
    dropped, question and answer through `hf_copy_clean`. Path-VQA has no answer_type field; the
    improved mode calls the yes/no ones closed."""
    qa = _need(path / "qas" / "test" / "test_qa.pkl", "Path-VQA test QA pickle")
    images = _need(path / "images" / "test", "Path-VQA test image folder")
    try:
        records = _PlainUnpickler(io.BytesIO(qa.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise EvalDataError(f"{qa}: not a plain-data pickle ({exc})") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvalDataError(f"{qa}: expected a list of {{image, question, answer}} records")
    out = []
    for i, rec in enumerate(_first_of_each(records)):
        where = f"{qa} record {i}"
        answer = hf_copy_clean(_field(rec, "answer", where))
        out.append(
            EvalSample(
                id=f"path-vqa-{i}",
                text=hf_copy_clean(_field(rec, "question", where)),
                reference=answer,
                images=(ImageRef(images / f"{_field(rec, 'image', where)}.jpg"),),
                meta={"answer_type": "CLOSED" if answer in ("yes", "no") else "OPEN"},
            )
        )
    return out


@reader("hf-vqa-parquet")
def read_hf_vqa_parquet(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """The Hugging Face copies MultiMedEval loads (flaviagiammarino/vqa-rad, /path-vqa):
    `data/test-*.parquet` with columns image{bytes,path}, question, answer (already cleaned)."""
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


def _split_at_headers(text: str, preamble_from: int = 0) -> tuple[list[str], list[str], list[int]]:
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
    sections, names, starts = _split_at_headers(text)
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


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


CXR_SPLIT_NAMES = ("mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-split.csv.gz")


def _mimic_cxr_root(path: Path) -> Path:
    """The folder holding the split file: `path` itself or MultiMedEval's `path/mimic-cxr-jpg/2.0.0`."""
    for root in (path, path / "mimic-cxr-jpg" / "2.0.0"):
        if any((root / name).is_file() for name in CXR_SPLIT_NAMES):
            return root
    raise EvalDataError(
        f"missing MIMIC-CXR split file: {path / CXR_SPLIT_NAMES[0]} (or .gz, or under {path / 'mimic-cxr-jpg/2.0.0'})"
    )


@reader("mimic-cxr")
def read_mimic_cxr(path: Path, options: dict[str, Any]) -> list[EvalSample]:
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
    reports_root = Path(options.get("reports_root") or root)
    max_images = options.get("max_images")
    include_indication = bool(options.get("include_indication", False))
    studies: dict[str, tuple[str, list[str]]] = {}
    with _open_text(split_file) as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            for key in ("dicom_id", "study_id", "subject_id", "split"):
                _field(row, key, f"{split_file} row {i + 2}")
            if row["split"] == "test":
                studies.setdefault(row["study_id"], (row["subject_id"], []))[1].append(row["dicom_id"])
    out = []
    for study, (subject, dicoms) in studies.items():
        folder = f"files/p{subject[:2]}/p{subject}"
        report = _need(reports_root / folder / f"s{study}.txt", "MIMIC-CXR report").read_text(encoding="utf-8")
        sections, names, _ = section_text(report)
        if "findings" not in names:
            continue  # MultiMedEval scores only studies whose report has a findings section
        indication = sections[names.index("indication")] if "indication" in names else ""
        kept = dicoms if max_images is None else dicoms[: int(max_images)]
        images = tuple(ImageRef(_need(root / folder / f"s{study}" / f"{d}.jpg", "MIMIC-CXR image")) for d in kept)
        out.append(
            EvalSample(
                id=f"mimic-cxr-s{study}",
                text=indication + " " if include_indication else "",
                reference=sections[names.index("findings")],
                images=images,
            )
        )
    return out


# ------------------------------------------------------------------------- summarization
# MIMIC-III radiology report summarization as MultiMedEval builds it (multimedeval/mimic_iii.py
# `MIMIC_III.setup`): radiology notes of NOTEEVENTS.csv grouped into modality_anatomy sets by their
# DESCRIPTION (`mapping`), the "FINAL REPORT" part split into sections, section names fixed with
# `section_map`, notes with exactly one impression kept, findings = the first non-empty section named
# in `findings_mapping[set]`, whitespace collapsed, `[**...**]` -> `___`, and the test set = the note
# ROW_IDs of `mimiciiisplit.csv` (split "test"). The three tables and the split file are MultiMedEval's
# own files (MIT licence), read from a MultiMedEval copy rather than re-typed here.
MIMIC_III_TABLES = ("mapping", "section_map", "findings_mapping")
_DEID = re.compile(r"\[\*\*(.*?)\*\*\]")


def _multimedeval_file(name: str, data_dir: Path, options: dict[str, Any]) -> Path:
    """`name` from options["multimedeval_dir"], else beside the data, else in an installed `multimedeval`."""
    candidates = []
    if options.get("multimedeval_dir"):
        candidates.append(Path(options["multimedeval_dir"]).expanduser() / name)
    candidates.append(data_dir / name)
    import importlib.util

    spec = importlib.util.find_spec("multimedeval")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / name for loc in spec.submodule_search_locations]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise EvalDataError(
        f"missing MultiMedEval's {name}: put it at {candidates[0]} (it is multimedeval/{name} in "
        "github.com/corentin-ryr/MultiMedEval) or set the task option multimedeval_dir"
    )


def load_mimic_iii_tables(module: Path) -> dict[str, Any]:
    """The literal tables `mapping`, `section_map`, `findings_mapping` of MultiMedEval's mimic_iii.py,
    read with `ast.literal_eval` (the module is never imported or executed)."""
    import ast

    try:
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    except SyntaxError as exc:
        raise EvalDataError(f"{module}: not valid Python ({exc})") from exc
    tables: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in MIMIC_III_TABLES:
                try:
                    tables[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError as exc:
                    raise EvalDataError(f"{module}: {node.targets[0].id} is not a literal ({exc})") from exc
    missing = [t for t in MIMIC_III_TABLES if t not in tables]
    if missing:
        raise EvalDataError(f"{module}: no top-level {', '.join(missing)} table (not MultiMedEval's mimic_iii.py?)")
    return tables


def _final_report(text: str) -> str | None:
    """From "FINAL REPORT" on, "(Over)...(Cont)" page breaks cut out; None without a final report."""
    if "FINAL REPORT" not in text:
        return None
    text = text[text.index("FINAL REPORT") :]
    while "(Over)" in text and "(Cont)" in text:
        over, cont = text.index("(Over)"), text.index("(Cont)")
        if cont < over:  # MultiMedEval loops forever on this; say so instead
            raise EvalDataError("a MIMIC-III note has '(Cont)' before '(Over)'; MultiMedEval cannot read it either")
        text = text[:over] + text[cont + 6 :]
    return text


def _mimic_iii_sections(text: str) -> tuple[list[str], list[str]]:
    """(names, texts) of a final report: MultiMedEval's `extract_sections` (its preamble skips the 12
    characters of "FINAL REPORT"; texts stripped, lower-cased, newlines removed, runs of spaces -> one)."""
    sections, names, _ = _split_at_headers(text, preamble_from=12)
    cleaned = [re.sub(" +", " ", s.strip().lower().replace("\n", "")) for s in sections]
    return names, cleaned


def _deidentified(text: str) -> str:
    for inner in _DEID.findall(text):
        text = text.replace(f"[**{inner}**]", "___")
    return text


def mimic_iii_pair(
    text: str, group: str, tables: dict[str, Any], section_rev: dict[str, str]
) -> tuple[str, str] | None:
    """(findings, impression) of one note of modality_anatomy `group`, or None when MultiMedEval skips it."""
    final = _final_report(text)
    if final is None:
        return None
    names, sections = _mimic_iii_sections(final)
    names = [section_rev.get(n, n) for n in names]
    if names.count("impression") != 1:
        return None  # none, or several studies in one note
    impression = sections[names.index("impression")]
    # MultiMedEval removes "impression" from the names but not from the texts, so later sections are
    # looked up one place early; kept, as it decides which text is the gold.
    names.remove("impression")
    findings = ""
    for wanted, _count in tables["findings_mapping"][group]:
        if wanted in names:
            findings = sections[names.index(wanted)]
            if findings:
                break
    if not findings or not impression:
        return None
    return _deidentified(re.sub(r"\s+", " ", findings)), _deidentified(re.sub(r"\s+", " ", impression))


def _noteevents_file(path: Path) -> Path:
    if path.is_file():
        return path
    for root in (path, path / "physionet.org" / "files" / "mimiciii" / "1.4"):
        for name in ("NOTEEVENTS.csv", "NOTEEVENTS.csv.gz"):
            if (root / name).is_file():
                return root / name
    raise EvalDataError(f"missing MIMIC-III notes: {path / 'NOTEEVENTS.csv'} (or NOTEEVENTS.csv.gz)")


@reader("mimic-iii-noteevents")
def read_mimic_iii(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """MIMIC-III 1.4 `NOTEEVENTS.csv(.gz)` (columns ROW_ID, DESCRIPTION, TEXT, ...) -> MultiMedEval's
    MIMIC-III summarization test set: findings -> impression, in MultiMedEval's order (modality_anatomy
    sets in `mapping` order, notes in file order). Needs MultiMedEval's `mimic_iii.py` and
    `mimiciiisplit.csv` (option `multimedeval_dir`, or beside the notes, or an installed multimedeval).
    Only the test notes' text is kept in memory."""
    notes = _noteevents_file(path)
    data_dir = notes.parent
    tables = load_mimic_iii_tables(_multimedeval_file("mimic_iii.py", data_dir, options))
    split_file = Path(options["split_file"]).expanduser() if options.get("split_file") else None
    split_file = split_file or _multimedeval_file("mimiciiisplit.csv", data_dir, options)
    with _open_text(_need(split_file, "MIMIC-III split file")) as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"ids", "split"} <= set(rows[0]):
        raise EvalDataError(f"{split_file}: expected columns ids,split")
    test_ids = {int(r["ids"]) for r in rows if r["split"] == "test"}
    section_rev = {v: k for k, values in tables["section_map"].items() for v in values}
    wanted = {d for descriptions in tables["mapping"].values() for d in descriptions}
    csv.field_size_limit(2**31 - 1)  # a note's TEXT can exceed csv's 128 KiB default
    kept: list[tuple[str, str]] = []  # (DESCRIPTION, TEXT) of test notes, file order
    ids: list[int] = []
    with _open_text(notes) as handle:
        reader_ = csv.DictReader(handle)
        for key in ("ROW_ID", "DESCRIPTION", "TEXT"):
            if key not in (reader_.fieldnames or []):
                raise EvalDataError(f"{notes}: missing column {key!r}")
        for row in tqdm(reader_, desc="MIMIC-III notes", unit="note", leave=False):
            if row["DESCRIPTION"] in wanted and int(row["ROW_ID"]) in test_ids:
                kept.append((row["DESCRIPTION"], row["TEXT"]))
                ids.append(int(row["ROW_ID"]))
    out = []
    for group, descriptions in tables["mapping"].items():
        modality, anatomy = group.split("_")[0], group.split("_")[1]
        for row_id, (description, text) in zip(ids, kept, strict=True):
            if description not in descriptions:
                continue
            try:
                pair = mimic_iii_pair(text, group, tables, section_rev)
            except EvalDataError as exc:
                raise EvalDataError(f"{notes} ROW_ID {row_id}: {exc}") from None
            if pair is not None:
                out.append(
                    EvalSample(
                        id=f"mimic-iii-{group}-{row_id}",
                        text=pair[0],
                        reference=pair[1],
                        meta={"modality": modality, "anatomy": anatomy},
                    )
                )
    return out


@reader("summarization-pairs")
def read_summarization(path: Path, options: dict[str, Any]) -> list[EvalSample]:
    """Findings -> impression pairs already extracted: line-aligned `test.findings.tok` /
    `test.impression.tok`, or a JSONL of {id?, findings, impression}. Not MultiMedEval's test set
    (that is `mimic-iii-noteevents`); the layout of this reader was not checked against a release."""
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
