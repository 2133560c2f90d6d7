"""Readers of the public on-disk formats, on the fixture files; errors name the path to provide."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from bimedix2.errors import ConfigError, EvalDataError
from bimedix2.eval.cache import SampleCache
from bimedix2.eval.datasets import read_dataset, report_section
from bimedix2.eval.tasks import list_tasks, load_task

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"


def test_vqa_rad_test_split_only() -> None:
    samples = read_dataset("vqa-rad-json", FIX / "vqa-rad", {}, "vqa-rad")
    assert [s.id for s in samples] == ["vqa-rad-1", "vqa-rad-2", "vqa-rad-4"]  # qid 3 is a train phrase
    assert samples[0].reference == "Yes" and samples[0].meta["answer_type"] == "CLOSED"
    assert samples[0].images[0].source == FIX / "vqa-rad" / "VQA_RAD Image Folder" / "synpic54610.jpg"


def test_slake_languages() -> None:
    en = read_dataset("slake-json", FIX / "slake", {"languages": ["en"]}, "slake")
    assert [s.id for s in en] == ["slake-11", "slake-12"]
    both = read_dataset("slake-json", FIX / "slake", {"languages": ["en", "zh"]}, "slake")
    assert len(both) == 3 and both[2].language == "zh"


def test_path_vqa_pickle_and_refusal(tmp_path: Path) -> None:
    samples = read_dataset("pathvqa-pkl", FIX / "path-vqa", {}, "path-vqa")
    assert [(s.reference, s.meta["answer_type"]) for s in samples] == [("no", "CLOSED"), ("granulomas", "OPEN")]
    bad = tmp_path / "pv"
    (bad / "qas" / "test").mkdir(parents=True)
    (bad / "images" / "test").mkdir(parents=True)
    (bad / "qas" / "test" / "test_qa.pkl").write_bytes(pickle.dumps(Path("x")))  # a class, not plain data
    with pytest.raises(EvalDataError, match="plain-data"):
        read_dataset("pathvqa-pkl", bad, {}, "path-vqa")


def test_hf_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jpg = (FIX / "path-vqa" / "images" / "test" / "test_0000.jpg").read_bytes()
    (tmp_path / "data").mkdir()
    table = pa.table({"image": [{"bytes": jpg, "path": "a.jpg"}], "question": ["is this benign?"], "answer": ["yes"]})
    pq.write_table(table, tmp_path / "data" / "test-00000-of-00001.parquet")
    (s,) = read_dataset("hf-vqa-parquet", tmp_path, {"id_prefix": "vqa-rad"}, "vqa-rad")
    assert s.images[0].source == jpg and s.reference == "yes" and s.id.startswith("vqa-rad-")


def test_mimic_cxr_studies_and_sections() -> None:
    samples = read_dataset("mimic-cxr", FIX / "mimic-cxr", {}, "mimic-cxr-report")
    # study 2 has no FINDINGS section; study 3 is train
    assert [s.id for s in samples] == ["mimic-cxr-s50000001"]
    assert len(samples[0].images) == 2
    assert samples[0].reference == "The lungs are clear. The heart size is normal. No pleural effusion or pneumothorax."
    assert report_section("FINDINGS: a.\n IMPRESSION: b.", "impression") == "b."


def test_mimic_iii_pairs(tmp_path: Path) -> None:
    samples = read_dataset("summarization-pairs", FIX / "mimic-iii", {}, "mimic-iii-summarization")
    assert len(samples) == 2 and samples[1].reference == "no acute intracranial abnormality ."
    (tmp_path / "test.findings.tok").write_text("a\nb\n")
    (tmp_path / "test.impression.tok").write_text("a\n")
    with pytest.raises(EvalDataError, match="has 2 lines"):
        read_dataset("summarization-pairs", tmp_path, {}, "mimic-iii-summarization")


def test_missing_data_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="--data vqa-rad=PATH"):
        read_dataset("vqa-rad-json", None, {}, "vqa-rad")
    with pytest.raises(EvalDataError, match=str(tmp_path / "nope")):
        read_dataset("vqa-rad-json", tmp_path / "nope", {}, "vqa-rad")
    with pytest.raises(EvalDataError, match="VQA_RAD Dataset Public.json"):
        read_dataset("vqa-rad-json", tmp_path, {}, "vqa-rad")
    (tmp_path / "test.json").write_text('[{"qid": 1}]')
    (tmp_path / "imgs").mkdir()
    with pytest.raises(EvalDataError, match="missing field 'q_lang'"):
        read_dataset("slake-json", tmp_path, {}, "slake")


def test_task_yamls_load() -> None:
    names = list_tasks()
    assert {
        "vqa-rad",
        "slake",
        "path-vqa",
        "mimic-cxr-report",
        "mimic-iii-summarization",
        "mcq",
        "bimed-mbench",
        "uphill",
    } <= set(names)
    for name in names:
        spec = load_task(name)
        assert spec.name == name
        spec.gen_params()
    with pytest.raises(ConfigError, match="unknown task"):
        load_task("no-such-task")


def test_cache_resume_torn_line_and_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    cache = SampleCache(path, {"model": "m", "t": 1})
    cache.add_many([{"id": "a", "prediction": "x"}, {"id": "b", "prediction": "y"}])
    with path.open("a") as handle:
        handle.write('{"id": "c", "predic')  # killed mid-write
    again = SampleCache(path, {"model": "m", "t": 1})
    assert set(again.records) == {"a", "b"} and "c" not in again
    assert path.read_text().count("\n") == 3  # the torn line is gone
    with pytest.raises(EvalDataError, match="other settings"):
        SampleCache(path, {"model": "m", "t": 2})
