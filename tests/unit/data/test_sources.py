"""Source builders on fixture files in each dataset's released on-disk layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bimedix2.data.io import iter_records, validate_file
from bimedix2.data.schema import validate_record
from bimedix2.data.sources import BUILDERS, BuildReport, build_source, iter_source
from bimedix2.errors import ConfigError, RecordError

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "data"
ROOTS = {
    "vqa-rad": "vqa-rad",
    "slake": "slake",
    "path-vqa": "path-vqa",
    "pmc-vqa": "pmc-vqa",
    "llava-med-instruct": "llava-med",
    "llava-med-alignment": "llava-med",
    "llava-med-to-qa": "llava-med",
    "medqa": "medqa",
    "medmcqa": "medmcqa",
    "pubmedqa": "pubmedqa",
    # added for BiMed-V at the paper's scale (tests in test_sources_v2.py)
    "pubmedqa-artificial": "pubmedqa",
    "pubmedqa-unlabeled": "pubmedqa",
    "pmc-vqa-open": "pmc-vqa",
    "pmc-oa": "pmc-oa",
    "healthcaremagic": "healthcaremagic",
    "icliniq": "icliniq",
    "medicationqa": "medicationqa",  # the xlsx release: test_sources_v2.py
    "liveqa": "liveqa",
    "medical-meadow-flashcards": "medical-meadow-flashcards",
    "medical-meadow-wikidoc": "medical-meadow-wikidoc",
}


def build(name: str) -> tuple[list, BuildReport]:
    report = BuildReport(name)
    return list(iter_source(name, FIX / ROOTS[name], report)), report


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_yields_valid_records(name: str, tmp_path: Path) -> None:
    records, _ = build(name)
    assert records
    for record in records:
        assert validate_record(record) == [], (record.id, validate_record(record))
        for image in record.images:
            assert (FIX / ROOTS[name] / image).is_file()
    out = tmp_path / f"{name}.jsonl"
    report = build_source(name, FIX / ROOTS[name], out, progress=False)
    assert report.written == len(records)
    assert validate_file(out, image_root=FIX / ROOTS[name]).ok
    assert [r.id for r in iter_records(out)] == [r.id for r in records]


def test_vqa_rad_splits_numbers_and_missing_image() -> None:
    records, report = build("vqa-rad")
    assert [(r.id, r.split) for r in records] == [("vqa-rad-1", "train"), ("vqa-rad-2", "test")]
    assert records[1].conversations[1].value == "2"  # numeric answers become text
    assert records[0].conversations[0].value == "<image>\nAre regions of the brain infarcted?"
    assert records[0].images == ("VQA_RAD Image Folder/synpic54610.jpg",)
    assert report.skipped == {"missing image": 1} and report.missing_images == ["vqa-rad-3"]


def test_slake_keeps_english_only_and_maps_modality() -> None:
    records, report = build("slake")
    assert [r.id for r in records] == ["slake-train-0", "slake-train-2", "slake-validation-10"]
    assert all("这" not in r.conversations[0].value for r in records)
    assert [r.modality for r in records] == ["CT", "X-ray", "X-ray"]
    assert report.skipped == {"not English": 1, "missing image": 1}


def test_path_vqa_reads_pickles_and_refuses_code(tmp_path: Path) -> None:
    records, report = build("path-vqa")
    assert [r.split for r in records] == ["train", "train", "validation"]
    assert records[0].images == ("images/train/train_0000.jpg",)
    assert report.missing_images == ["path-vqa-test-0"]
    evil = tmp_path / "qas" / "train"
    evil.mkdir(parents=True)
    import pickle

    (evil / "train_qa.pkl").write_bytes(pickle.dumps([Path("x")]))
    with pytest.raises(RecordError, match="refusing to unpickle"):
        list(iter_source("path-vqa", tmp_path))


def test_pmc_vqa_mcq_with_options_and_answer_letter() -> None:
    records, report = build("pmc-vqa")
    assert len(records) == 2 and report.missing_images == ["pmc-vqa-test-1"]
    q = records[0].conversations[0].value
    assert q.startswith("<image>\nWhat imaging modality was used?") and "\nB. CT scan" in q
    assert records[0].conversations[1].value == "The correct answer is B. CT scan"


def test_llava_med_instruct_and_alignment() -> None:
    instruct, report = build("llava-med-instruct")
    assert len(instruct) == 1 and len(instruct[0].conversations) == 4 and instruct[0].task == "conversation"
    assert report.missing_images == ["llava-med-instruct-missing-1"]
    alignment, _ = build("llava-med-alignment")
    assert alignment[0].task == "caption" and alignment[0].id == "llava-med-alignment-PMC3_F2"


def test_llava_med_to_qa_one_record_per_exchange() -> None:
    instruct, _ = build("llava-med-instruct")
    qa, report = build("llava-med-to-qa")
    turns = instruct[0].conversations
    assert len(qa) == len(turns) // 2 == 2
    assert report.missing_images == ["llava-med-to-qa-missing-1"]
    for n, record in enumerate(qa):
        question, answer = record.conversations
        assert record.task == "vqa" and record.images == instruct[0].images
        assert record.provenance["turn"] == n + 1 and record.id.endswith(f"-{n + 1}")
        assert question.value.startswith("<image>\n") and question.value.count("<image>") == 1
        assert question.value.removeprefix("<image>\n") == turns[2 * n].value.replace("<image>", "").strip()
        assert answer.value == turns[2 * n + 1].value.strip()


def test_llava_med_to_qa_refuses_a_conversation_that_does_not_alternate(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.jpg")
    bad = [
        {
            "id": "x",
            "image": "a.jpg",
            "conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q2"}],
        }
    ]
    (tmp_path / "llava_med_instruct_60k_inline_mention.json").write_text(json.dumps(bad))
    with pytest.raises(RecordError, match=r"\[0\]: expected alternating human/gpt turns"):
        list(iter_source("llava-med-to-qa", tmp_path))


def test_mcq_sources_have_options_answers_and_explanations() -> None:
    medqa, _ = build("medqa")
    assert [r.split for r in medqa] == ["train", "test"]
    assert "C. Nitrofurantoin" in medqa[0].conversations[0].value
    assert medqa[0].conversations[1].value == "The correct answer is C. Nitrofurantoin"
    medmcqa, report = build("medmcqa")
    assert [r.split for r in medmcqa] == ["train", "validation"]
    assert medmcqa[0].conversations[1].value.startswith("The correct answer is B. Ethosuximide\n\nExplanation: ")
    assert medmcqa[1].conversations[1].value == "The correct answer is D. N-acetylcysteine"
    assert report.skipped == {"no answer key": 1}
    pubmed, _ = build("pubmedqa")
    assert {r.id: r.split for r in pubmed} == {"pubmedqa-21645374": "train", "pubmedqa-16418930": "test"}
    assert pubmed[1].conversations[0].value.startswith("Context: Background sentence.")
    assert "Explanation: Evidence is mixed." in pubmed[1].conversations[1].value


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    available = "Available: healthcaremagic, icliniq, liveqa, llava-med-alignment, "
    with pytest.raises(ConfigError, match=f"unknown dataset source .*{available}"):
        iter_source("nope", tmp_path)
    with pytest.raises(RecordError, match="dataset folder not found"):
        iter_source("medqa", tmp_path / "absent")
    (tmp_path / "phrases_no_exclude_train.jsonl").write_text('{"question": "q", "options": {"A": "x"}}\n')
    with pytest.raises(RecordError, match=r"phrases_no_exclude_train.jsonl:1: missing field\(s\) \['answer_idx'\]"):
        list(iter_source("medqa", tmp_path))
