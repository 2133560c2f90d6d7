"""MIMIC-III radiology report summarization test set (MultiMedEval's), and already-extracted pairs."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ...errors import EvalDataError
from .base import EvalSample, get_field, need, open_text, read_jsonl, reader
from .mimic_cxr import split_at_headers


@dataclass(frozen=True)
class MimicIIIOptions:
    """`mimic-iii-noteevents` options."""

    multimedeval_dir: Path | None = None  # folder with MultiMedEval's mimic_iii.py and mimiciiisplit.csv
    split_file: Path | None = None  # an `ids,split` CSV instead of mimiciiisplit.csv


# MIMIC-III radiology report summarization as MultiMedEval builds it (multimedeval/mimic_iii.py
# `MIMIC_III.setup`): radiology notes of NOTEEVENTS.csv grouped into modality_anatomy sets by their
# DESCRIPTION (`mapping`), the "FINAL REPORT" part split into sections, section names fixed with
# `section_map`, notes with exactly one impression kept, findings = the first non-empty section named
# in `findings_mapping[set]`, whitespace collapsed, `[**...**]` -> `___`, and the test set = the note
# ROW_IDs of `mimiciiisplit.csv` (split "test"). The three tables and the split file are MultiMedEval's
# own files (MIT licence), read from a MultiMedEval copy rather than re-typed here.
MIMIC_III_TABLES = ("mapping", "section_map", "findings_mapping")
_DEID = re.compile(r"\[\*\*(.*?)\*\*\]")


def _multimedeval_file(name: str, data_dir: Path, options: MimicIIIOptions) -> Path:
    """`name` from options.multimedeval_dir, else beside the data, else in an installed `multimedeval`."""
    candidates = []
    if options.multimedeval_dir:
        candidates.append(Path(options.multimedeval_dir).expanduser() / name)
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
    sections, names, _ = split_at_headers(text, preamble_from=12)
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


@reader("mimic-iii-noteevents", MimicIIIOptions)
def read_mimic_iii(path: Path, options: MimicIIIOptions) -> list[EvalSample]:
    """MIMIC-III 1.4 `NOTEEVENTS.csv(.gz)` (columns ROW_ID, DESCRIPTION, TEXT, ...) -> MultiMedEval's
    MIMIC-III summarization test set: findings -> impression, in MultiMedEval's order (modality_anatomy
    sets in `mapping` order, notes in file order). Needs MultiMedEval's `mimic_iii.py` and
    `mimiciiisplit.csv` (option `multimedeval_dir`, or beside the notes, or an installed multimedeval).
    Only the test notes' text is kept in memory."""
    notes = _noteevents_file(path)
    data_dir = notes.parent
    tables = load_mimic_iii_tables(_multimedeval_file("mimic_iii.py", data_dir, options))
    split_file = Path(options.split_file).expanduser() if options.split_file else None
    split_file = split_file or _multimedeval_file("mimiciiisplit.csv", data_dir, options)
    with open_text(need(split_file, "MIMIC-III split file")) as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"ids", "split"} <= set(rows[0]):
        raise EvalDataError(f"{split_file}: expected columns ids,split")
    test_ids = {int(r["ids"]) for r in rows if r["split"] == "test"}
    section_rev = {v: k for k, values in tables["section_map"].items() for v in values}
    wanted = {d for descriptions in tables["mapping"].values() for d in descriptions}
    csv.field_size_limit(2**31 - 1)  # a note's TEXT can exceed csv's 128 KiB default
    kept: list[tuple[str, str]] = []  # (DESCRIPTION, TEXT) of test notes, file order
    ids: list[int] = []
    with open_text(notes) as handle:
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
def read_summarization(path: Path, options: Any) -> list[EvalSample]:
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
                    text=str(get_field(rec, "findings", where)),
                    reference=str(get_field(rec, "impression", where)),
                    meta={k: rec[k] for k in ("modality", "anatomy") if k in rec},
                )
            )
        return out
    findings = need(path / "test.findings.tok", "MIMIC-III test findings file").read_text(encoding="utf-8").splitlines()
    impressions = (
        need(path / "test.impression.tok", "MIMIC-III test impression file").read_text(encoding="utf-8").splitlines()
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
