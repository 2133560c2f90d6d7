"""BiMediX v1's open-QA text sources, each read from its public release's layout. One
single-turn ``chat`` record per question: human = the question, gpt = the answer (English).

Builder: files read (the first found) and their layout.

- ``healthcaremagic``: ``HealthCareMagic-100k.json`` (ChatDoctor), a JSON array of
  {instruction, input, output}; input = the patient, output = the doctor.
- ``icliniq``: ``iCliniq.json`` or ``icliniq.json`` (ChatDoctor), {instruction, input, output}, or
  its test layout {input, answer_icliniq, answer_chatgpt, answer_chatdoctor} (the iCliniq doctor's
  answer is used).
- ``medicationqa``: the released ``MedInfo2019-QA-Medications.xlsx`` (first sheet, read with the
  standard library), ``MedInfo2019-QA-Medications.csv``, or the folder's one ``*.csv``/``*.xlsx``;
  columns Question, Answer (Focus (Drug), Question Type kept).
- ``liveqa``: ``liveqa.json``, ``liveqa.jsonl`` or the folder's one ``*.json``/``*.jsonl`` (the
  Hub's JSON conversions of TREC LiveQA Medical): objects with ``question`` and ``answer``.
- ``medical-meadow-flashcards``: ``medical_meadow_wikidoc_medical_flashcards.json`` (medAlpaca),
  a JSON array of {instruction, input, output}.
- ``medical-meadow-wikidoc``: ``medical_meadow_wikidoc.json`` (medAlpaca), same layout.

For {instruction, input, output} rows the question is ``input`` (the instruction is the same
generic line on every row, e.g. "If you are a doctor, please answer the medical questions based on
the patient's description.", and is kept in provenance); a row with an empty ``input`` asks its
``instruction``. Rows with an empty question or answer are skipped and counted. The releases are
English; a row written in Arabic (the same layouts hold translated data) is tagged ``ar`` by
`conversation.detect_language` on its question and answer, its text unchanged (surrounding whitespace trimmed).
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from ...conversation import detect_language
from ...errors import RecordError
from ...fileio import iter_jsonl
from ..schema import Record, Turn
from .common import BuildReport, load_json, require


@dataclass(frozen=True)
class OpenQASource:
    source: str
    dataset: str
    names: tuple[str, ...]  # file names tried in order
    fallback_suffixes: tuple[str, ...]  # else: the folder's only file with one of these suffixes
    read: Callable[[Path], Iterator[tuple[str, Mapping[str, Any]]]]  # (where, row)
    row: Callable[[Mapping[str, Any], str], tuple[str, str, dict[str, Any]]]  # (question, answer, provenance)


def _json_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if path.suffix == ".jsonl":
        for line_no, obj in iter_jsonl(path, RecordError):
            yield f"{path}:{line_no}", obj
        return
    data = load_json(path)
    if not isinstance(data, list):
        raise RecordError(f"{path}: expected a JSON array of objects")
    for i, obj in enumerate(data):
        yield f"{path}[{i}]", obj


def _table_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    return _xlsx_rows(path) if path.suffix == ".xlsx" else _csv_rows(path)


_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_CELL = re.compile(r"^([A-Z]+)(\d+)$")


def _column(ref: str) -> int:
    letters = _CELL.match(ref)
    if not letters:
        raise ValueError(f"bad cell reference {ref!r}")
    n = 0
    for ch in letters.group(1):
        n = n * 26 + ord(ch) - 64
    return n - 1


def _xlsx_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Rows of the first worksheet of an .xlsx as dicts keyed by the header row (strings only)."""
    try:
        with zipfile.ZipFile(path) as book:
            names = book.namelist()
            shared: list[str] = []
            if "xl/sharedStrings.xml" in names:
                root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
                shared = [
                    "".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")) for si in root.findall("m:si", _NS)
                ]
            sheets = sorted(n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
            if not sheets:
                raise RecordError(f"{path}: no worksheet in the workbook")
            sheet = "xl/worksheets/sheet1.xml" if "xl/worksheets/sheet1.xml" in sheets else sheets[0]
            rows_xml = ElementTree.fromstring(book.read(sheet)).findall("m:sheetData/m:row", _NS)
            table: list[tuple[int, dict[int, str]]] = []
            for row in rows_xml:
                cells: dict[int, str] = {}
                for cell in row.findall("m:c", _NS):
                    kind, value = cell.get("t", "n"), cell.find("m:v", _NS)
                    if kind == "s" and value is not None:
                        text = shared[int(value.text or "")]
                    elif kind == "inlineStr":
                        text = "".join(t.text or "" for t in cell.iter(f"{{{_NS['m']}}}t"))
                    else:
                        text = (value.text or "") if value is not None else ""
                    cells[_column(cell.get("r", ""))] = text
                table.append((int(row.get("r", len(table) + 1)), cells))
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError, IndexError, ValueError) as exc:
        raise RecordError(f"{path}: not a readable .xlsx workbook ({exc}); or save it as CSV (UTF-8)") from exc
    if not table:
        raise RecordError(f"{path}: the first worksheet is empty")
    header = table[0][1]
    columns = {i: name.strip() for i, name in header.items() if name.strip()}
    missing = [c for c in ("Question", "Answer") if c not in columns.values()]
    if missing:
        raise RecordError(f"{path}: missing column(s) {missing} (found {list(columns.values())})")
    for row_no, cells in table[1:]:
        if any(v.strip() for v in cells.values()):
            yield f"{path}:row {row_no}", {name: cells.get(i, "") for i, name in columns.items()}


def _csv_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("Question", "Answer") if c not in (reader.fieldnames or [])]
            if missing:
                raise RecordError(f"{path}: missing column(s) {missing} (found {reader.fieldnames})")
            for row_no, row in enumerate(reader, 2):
                yield f"{path}:{row_no}", row
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not UTF-8 text ({exc}); save the sheet as CSV UTF-8") from exc


def _string(row: Mapping[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{where}: {key} must be a string, got {type(value).__name__}")
    return value


def _instruction_row(row: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    require(row, ("instruction", "output"), where)
    instruction = _string(row, "instruction", where)
    question = _string(row, "input", where).strip() or instruction
    return question, _string(row, "output", where), {"instruction": instruction}


def _icliniq_row(row: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    if "answer_icliniq" in row:  # ChatDoctor's iCliniq test layout
        require(row, ("input",), where)
        return _string(row, "input", where), _string(row, "answer_icliniq", where), {}
    return _instruction_row(row, where)


def _medicationqa_row(row: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    columns = {"focus": "Focus (Drug)", "question_type": "Question Type"}
    extra = {key: row[col].strip() for key, col in columns.items() if (row.get(col) or "").strip()}
    return row.get("Question") or "", row.get("Answer") or "", extra


def _liveqa_row(row: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    require(row, ("question", "answer"), where)
    extra = {k: row[k] for k in ("qid", "id", "focus", "type") if isinstance(row.get(k), (str, int))}
    return _string(row, "question", where), _string(row, "answer", where), extra


SOURCES: dict[str, OpenQASource] = {
    s.source: s
    for s in (
        OpenQASource(
            "healthcaremagic",
            "ChatDoctor HealthCareMagic-100k",
            ("HealthCareMagic-100k.json",),
            (),
            _json_rows,
            _instruction_row,
        ),
        OpenQASource("icliniq", "ChatDoctor iCliniq", ("iCliniq.json", "icliniq.json"), (), _json_rows, _icliniq_row),
        OpenQASource(
            "medicationqa",
            "MedicationQA",
            ("MedInfo2019-QA-Medications.xlsx", "MedInfo2019-QA-Medications.csv"),
            (".csv", ".xlsx"),
            _table_rows,
            _medicationqa_row,
        ),
        OpenQASource(
            "liveqa", "LiveQA Medical", ("liveqa.json", "liveqa.jsonl"), (".json", ".jsonl"), _json_rows, _liveqa_row
        ),
        OpenQASource(
            "medical-meadow-flashcards",
            "Medical Meadow medical flashcards",
            ("medical_meadow_wikidoc_medical_flashcards.json",),
            (),
            _json_rows,
            _instruction_row,
        ),
        OpenQASource(
            "medical-meadow-wikidoc",
            "Medical Meadow wikidoc",
            ("medical_meadow_wikidoc.json",),
            (),
            _json_rows,
            _instruction_row,
        ),
    )
}


def find_file(root: Path, spec: OpenQASource) -> Path:
    for name in spec.names:
        if (root / name).is_file():
            return root / name
    candidates = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in spec.fallback_suffixes)
    if len(candidates) == 1:
        return candidates[0]
    found = f", found {[p.name for p in candidates]}" if candidates else ""
    wanted = list(spec.names) + [f"one *{s}" for s in spec.fallback_suffixes]
    raise RecordError(f"{root}: no {spec.dataset} file ({' or '.join(wanted)}){found}")


def build(root: Path, report: BuildReport, source: str) -> Iterator[Record]:
    spec = SOURCES.get(source)
    if spec is None:
        raise RecordError(f"unknown open-QA source {source!r}. Available: {', '.join(sorted(SOURCES))}")
    path = find_file(root, spec)
    for index, (where, row) in enumerate(spec.read(path)):
        if not isinstance(row, dict):
            raise RecordError(f"{where}: expected an object, got {type(row).__name__}")
        question, answer, extra = spec.row(row, where)
        if not question.strip() or not answer.strip():
            report.skip("empty question or answer")
            continue
        yield Record(
            id=f"{spec.source}-{index}",
            conversations=(Turn("human", question.strip()), Turn("gpt", answer.strip())),
            language=detect_language(f"{question}\n{answer}"),
            source=spec.source,
            task="chat",
            split="train",
            provenance={"dataset": spec.dataset, "file": path.name, "index": index, **extra},
        )
