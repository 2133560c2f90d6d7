"""PubMedQA PQA-L: ``ori_pqal.json`` (PMID -> {QUESTION, CONTEXTS, LABELS, MESHES, YEAR,
final_decision, LONG_ANSWER, ...}); an optional ``test_ground_truth.json`` (PMID -> label)
marks the test split. Records are yes/no/maybe MCQs with the long answer as explanation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import RecordError
from ..schema import Record, Turn
from .common import BuildReport, load_json, mcq_answer, mcq_prompt, require

SOURCE = "pubmedqa"
OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def build(root: Path, report: BuildReport) -> Iterator[Record]:
    data = load_json(root / "ori_pqal.json")
    if not isinstance(data, dict):
        raise RecordError(f"{root / 'ori_pqal.json'}: expected an object keyed by PMID")
    test_ids: set[str] = set()
    if (root / "test_ground_truth.json").is_file():
        test_ids = set(load_json(root / "test_ground_truth.json"))
    for pmid, item in data.items():
        where = f"{root / 'ori_pqal.json'}[{pmid}]"
        require(item, ("QUESTION", "CONTEXTS", "final_decision"), where)
        decision = item["final_decision"]
        letter = next((k for k, v in OPTIONS.items() if v == decision), None)
        if letter is None:
            raise RecordError(f"{where}: final_decision {decision!r} is not yes/no/maybe")
        context = " ".join(item["CONTEXTS"])
        yield Record(
            id=f"{SOURCE}-{pmid}",
            conversations=(
                Turn("human", mcq_prompt(item["QUESTION"], OPTIONS, context=context)),
                Turn("gpt", mcq_answer(letter, decision, item.get("LONG_ANSWER", ""))),
            ),
            language="en",
            source=SOURCE,
            task="mcq",
            split="test" if pmid in test_ids else "train",
            provenance={"dataset": "PubMedQA PQA-L", "pmid": pmid, "year": item.get("YEAR", "")},
        )
