"""PubMedQA (github.com/pubmedqa/pubmedqa, ``data/``): three subsets, each one JSON object keyed by
PMID -> {QUESTION, CONTEXTS, LABELS, MESHES, YEAR, LONG_ANSWER, final_decision, ...}.

Which file gives what:

- ``pubmedqa``: ``ori_pqal.json`` (PQA-L, 1k expert-annotated items, yes/no/maybe) -> MCQ with the
  long answer as explanation; ``test_ground_truth.json`` (PMID -> label) marks the test split.
- ``pubmedqa-artificial``: ``ori_pqaa.json`` (PQA-A, 211k generated items, yes/no labels derived
  from the conclusions) -> MCQ with the long answer as explanation; all train.
- ``pubmedqa-unlabeled``: ``ori_pqau.json`` (PQA-U, 61k items, no ``final_decision``) -> open QA:
  context + question -> LONG_ANSWER; all train.

An item of PQA-U never becomes an MCQ (it has no label), and a PQA-U item without a long answer
is skipped and counted (``no long answer``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ...errors import RecordError
from ..schema import Record, Turn
from .common import BuildReport, load_json, mcq_answer, mcq_prompt, require

SOURCE = "pubmedqa"
OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}
SUBSETS = {
    # kind: (file, dataset name, id prefix)
    "labeled": ("ori_pqal.json", "PubMedQA PQA-L", SOURCE),
    "artificial": ("ori_pqaa.json", "PubMedQA PQA-A", f"{SOURCE}-pqaa"),
    "unlabeled": ("ori_pqau.json", "PubMedQA PQA-U", f"{SOURCE}-pqau"),
}
OPEN_INSTRUCTION = "Answer the question using the context."


def _items(root: Path, name: str) -> Iterator[tuple[str, Mapping[str, Any], str]]:
    path = root / name
    if not path.is_file():
        raise RecordError(f"{path}: file not found (is this PubMedQA's data/ folder?)")
    data = load_json(path)
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected an object keyed by PMID")
    for pmid, item in data.items():
        where = f"{path}[{pmid}]"
        if not isinstance(item, dict):
            raise RecordError(f"{where}: expected an object, got {type(item).__name__}")
        yield str(pmid), item, where


def _context(item: Mapping[str, Any], where: str) -> str:
    contexts = item["CONTEXTS"]
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise RecordError(f"{where}: CONTEXTS must be a list of strings")
    return " ".join(contexts)


def _text(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{where}: {key} must be a string, got {type(value).__name__}")
    return value


def build(root: Path, report: BuildReport, kind: str = "labeled") -> Iterator[Record]:
    """Records of one PubMedQA subset (``labeled``, ``artificial`` or ``unlabeled``)."""
    if kind not in SUBSETS:
        raise RecordError(f"PubMedQA subset must be one of {list(SUBSETS)}, got {kind!r}")
    name, dataset, prefix = SUBSETS[kind]
    test_ids: set[str] = set()
    if kind == "labeled" and (root / "test_ground_truth.json").is_file():
        test_ids = set(load_json(root / "test_ground_truth.json"))
    for pmid, item, where in _items(root, name):
        if kind == "unlabeled":
            record = _open_record(pmid, item, where, prefix, dataset, report)
        else:
            record = _mcq_record(pmid, item, where, prefix, dataset, "test" if pmid in test_ids else "train")
        if record is not None:
            yield record


def _mcq_record(pmid: str, item: Mapping[str, Any], where: str, prefix: str, dataset: str, split: str) -> Record:
    require(item, ("QUESTION", "CONTEXTS", "final_decision"), where)
    decision = item["final_decision"]
    letter = next((k for k, v in OPTIONS.items() if v == decision), None)
    if letter is None:
        raise RecordError(f"{where}: final_decision {decision!r} is not yes/no/maybe")
    return Record(
        id=f"{prefix}-{pmid}",
        conversations=(
            Turn("human", mcq_prompt(_text(item, "QUESTION", where), OPTIONS, context=_context(item, where))),
            Turn("gpt", mcq_answer(letter, decision, _text(item, "LONG_ANSWER", where))),
        ),
        language="en",
        source=SOURCE,
        task="mcq",
        split=split,
        provenance={"dataset": dataset, "pmid": pmid, "year": item.get("YEAR", "")},
    )


def _open_record(
    pmid: str, item: Mapping[str, Any], where: str, prefix: str, dataset: str, report: BuildReport
) -> Record | None:
    require(item, ("QUESTION", "CONTEXTS"), where)
    answer = _text(item, "LONG_ANSWER", where).strip()
    if not answer:
        report.skip("no long answer")
        return None
    question = _text(item, "QUESTION", where).strip()
    prompt = f"Context: {_context(item, where).strip()}\n\nQuestion: {question}\n{OPEN_INSTRUCTION}"
    return Record(
        id=f"{prefix}-{pmid}",
        conversations=(Turn("human", prompt), Turn("gpt", answer)),
        language="en",
        source=SOURCE,
        task="chat",
        split="train",
        provenance={"dataset": dataset, "pmid": pmid, "year": item.get("YEAR", "")},
    )
