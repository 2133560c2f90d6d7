"""Readers of the public on-disk formats, on the fixture files; errors name the path to provide."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import pytest

from bimedix2.errors import ConfigError, EvalDataError
from bimedix2.eval.datasets import (
    hf_copy_clean,
    load_mimic_iii_tables,
    mimic_iii_pair,
    read_dataset,
    report_section,
    section_text,
)
from bimedix2.eval.results import SampleCache
from bimedix2.eval.tasks import list_tasks, load_task

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"


def test_vqa_rad_test_split_as_the_hf_copy() -> None:
    samples = read_dataset("vqa-rad-json", FIX / "vqa-rad", {}, "vqa-rad")
    # qid 3/6: train phrases; qid 5: same (image, question, answer) as qid 2 -> dropped as in flaviagiammarino/vqa-rad
    assert [s.id for s in samples] == ["vqa-rad-1", "vqa-rad-2", "vqa-rad-4"]
    # question and answer lower-cased, spaces collapsed, " ?" -> "?" (the copy MultiMedEval loads)
    assert (samples[0].text, samples[0].reference) == ("are regions of the brain infarcted?", "yes")
    assert (samples[1].text, samples[1].reference) == ("which lung has the mass?", "right lung")
    assert samples[0].meta["answer_type"] == "CLOSED"
    assert samples[0].images[0].source == FIX / "vqa-rad" / "VQA_RAD Image Folder" / "synpic54610.jpg"


def test_hf_copy_clean() -> None:
    assert hf_copy_clean("  Is  the Mass  ?  ") == "is the mass?"
    assert hf_copy_clean(2) == "2"
    assert hf_copy_clean("Yes\t") == "yes"  # strip() takes tabs; inner tabs stay


def test_slake_languages_and_raw_answers() -> None:
    en = read_dataset("slake-json", FIX / "slake", {"languages": ["en"]}, "slake")
    assert [s.id for s in en] == ["slake-11", "slake-12"]
    assert en[0].reference == "Yes"  # MultiMedEval keeps SLAKE's answer as is (its yes/no prompt rule misses "Yes")
    both = read_dataset("slake-json", FIX / "slake", {"languages": ["en", "zh"]}, "slake")
    assert len(both) == 3 and both[2].language == "zh"


def test_path_vqa_pickle_dedup_clean_and_refusal(tmp_path: Path) -> None:
    samples = read_dataset("pathvqa-pkl", FIX / "path-vqa", {}, "path-vqa")
    # the third record repeats the first -> dropped; "No" -> "no" as in flaviagiammarino/path-vqa
    assert [(s.text, s.reference, s.meta["answer_type"]) for s in samples] == [
        ("is this benign?", "no", "CLOSED"),
        ("what are present?", "granulomas", "OPEN"),
    ]
    assert samples[0].images[0].source == FIX / "path-vqa" / "images" / "test" / "test_0000.jpg"
    bad = tmp_path / "pv"
    (bad / "qas" / "test").mkdir(parents=True)
    (bad / "images" / "test").mkdir(parents=True)
    (bad / "qas" / "test" / "test_qa.pkl").write_bytes(pickle.dumps(Path("x")))  # a class, not plain data
    with pytest.raises(EvalDataError, match="plain-data"):
        read_dataset("pathvqa-pkl", bad, {}, "path-vqa")
    (bad / "qas" / "test" / "test_qa.pkl").write_bytes(pickle.dumps({"image": ["a"]}))
    with pytest.raises(EvalDataError, match="list of"):
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


CXR_REPORT = (
    "                                 FINAL REPORT\n"
    " EXAMINATION:  CHEST (PA AND LAT)\n \n"
    " INDICATION:  ___ with cough.\n \n"
    " FINDINGS: \n \n The lungs are clear.\n \n"
    " IMPRESSION: \n \n No acute process.\n"
)


def test_section_text_rules() -> None:
    sections, names, starts = section_text(CXR_REPORT)
    assert names == ["preamble", "examination", "indication", "findings", "impression"]
    assert sections[3] == "\n \n The lungs are clear.\n " and CXR_REPORT[starts[3] :].startswith(sections[3])
    # a view name is findings; an empty FINDINGS section is dropped; typos and synonyms are normalised
    _, names, _ = section_text(" \n PA AND LATERAL VIEWS OF THE CHEST:  Clear.\n \n FINDINGS: \n \n IMPRESSON:  Ok.\n")
    assert names == ["preamble", "findings", "impression"]
    _, names, _ = section_text("x\n REASON FOR EXAM:  Cough.\n \n CONCLUSION:  Fine.\n")
    assert names == ["preamble", "indication", "impression"]
    # neither findings nor impression: the last paragraph becomes its own section
    sections, names, _ = section_text("x\n HISTORY:  Cough.\n \n Lungs clear.\n")
    assert names == ["preamble", "history", "last_paragraph"] and sections[-1] == " Lungs clear.\n"
    assert section_text("no headers here") == (["no headers here"], ["full report"], [0])
    assert report_section(CXR_REPORT, "impression") == "\n \n No acute process.\n"
    assert report_section(CXR_REPORT, "comparison") == ""


def test_mimic_cxr_as_multimedeval(tmp_path: Path) -> None:
    samples = read_dataset("mimic-cxr", FIX / "mimic-cxr", {}, "mimic-cxr-report")
    # study 2 has no findings section; study 3 is train; study 4's findings header is a view name
    assert [s.id for s in samples] == ["mimic-cxr-s50000001", "mimic-cxr-s50000004"]
    first = samples[0]
    assert [i.source.name for i in first.images] == ["d1b.jpg", "d1a.jpg"]  # split-file order, all of them
    assert (
        first.reference
        == "\n \n The lungs are clear. The heart size is normal.\n No pleural effusion or pneumothorax.\n "
    )
    assert first.text == ""
    assert samples[1].reference == " Mild cardiomegaly.  No edema.\n "  # the empty FINDINGS section was dropped
    with_ind = read_dataset("mimic-cxr", FIX / "mimic-cxr", {"include_indication": True}, "mimic-cxr-report")
    assert [s.text for s in with_ind] == [" ___ with cough.\n  ", " "]  # raw indication + " ", as MultiMedEval
    spec = load_task("mimic-cxr-report")  # paper protocol: the paper's prompt; toolkit: MultiMedEval's request
    assert (
        spec.for_protocol("paper").prompt.format(question="")
        == "Please caption this scan with findings and impressions."
    )
    toolkit = spec.for_protocol("toolkit").prompt
    assert toolkit.format(question=first.text) == "Can you provide a radiology report for this medical image?"
    capped = read_dataset("mimic-cxr", FIX / "mimic-cxr", {"max_images": 1}, "mimic-cxr-report")
    assert [i.source.name for i in capped[0].images] == ["d1b.jpg"]
    # MultiMedEval's own layout: <dir>/mimic-cxr-jpg/2.0.0/
    shutil.copytree(FIX / "mimic-cxr", tmp_path / "mimic-cxr-jpg" / "2.0.0")
    nested = read_dataset("mimic-cxr", tmp_path, {}, "mimic-cxr-report")
    assert [s.reference for s in nested] == [s.reference for s in samples]
    with pytest.raises(EvalDataError, match="mimic-cxr-2.0.0-split.csv"):
        read_dataset("mimic-cxr", tmp_path / "mimic-cxr-jpg", {}, "mimic-cxr-report")


def test_mimic_iii_as_multimedeval() -> None:
    samples = read_dataset("mimic-iii-noteevents", FIX / "mimic-iii", {}, "mimic-iii-summarization")
    # CT_head before MR_head (mapping order) although note 104 comes first in the file; 102 has two
    # impressions, 103 is a train note, 106's DESCRIPTION is in no set, 107 has no FINAL REPORT
    assert [s.id for s in samples] == ["mimic-iii-CT_head-101", "mimic-iii-MR_head-104", "mimic-iii-MR_head-105"]
    ct, mr, quirk = samples
    # "(Over)...(Cont)" page break cut out, lower-cased, whitespace collapsed, [**...**] -> ___
    assert ct.text == "there is no hemorrhage. the ventricles are normal in size. seen by dr. ___. no mass effect."
    assert ct.reference == "no acute intracranial process."
    assert ct.meta == {"modality": "CT", "anatomy": "head"}
    # "IMPRESION" is an impression (section_map); "mri of the head" is an MR_head findings section
    assert (mr.text, mr.reference) == ("normal brain parenchyma.", "normal mri of the head.")
    # MultiMedEval looks findings up one place early when they follow the impression: kept
    assert (quirk.text, quirk.reference) == ("small old infarct.", "small old infarct.")
    prompt = load_task("mimic-iii-summarization").prompt.format(question=ct.text)
    assert prompt == ct.text + "\nSummarize the findings."


def test_mimic_iii_tables_and_files(tmp_path: Path) -> None:
    tables = load_mimic_iii_tables(FIX / "mimic-iii" / "mimic_iii.py")
    assert tables["section_map"]["indication"] == [" indication"]  # duplicate key: the later list wins
    assert tables["findings_mapping"]["CT_head"][0] == ("findings", 100)
    data = tmp_path / "notes"
    data.mkdir()
    with gzip.open(data / "NOTEEVENTS.csv.gz", "wb") as handle:
        handle.write((FIX / "mimic-iii" / "NOTEEVENTS.csv").read_bytes())
    with pytest.raises(EvalDataError, match="mimic_iii.py"):
        read_dataset("mimic-iii-noteevents", data, {}, "mimic-iii-summarization")
    split = tmp_path / "split.csv"
    split.write_text("ids,split\n104,test\n101,train\n")
    got = read_dataset(
        "mimic-iii-noteevents",
        data,
        {"multimedeval_dir": str(FIX / "mimic-iii"), "split_file": str(split)},
        "mimic-iii-summarization",
    )
    assert [s.id for s in got] == ["mimic-iii-MR_head-104"]
    rev = {v: k for k, vs in tables["section_map"].items() for v in vs}
    with pytest.raises(EvalDataError, match=r"'\(Cont\)' before '\(Over\)'"):  # MultiMedEval would loop forever
        mimic_iii_pair("FINAL REPORT\n (Cont) a (Over)\n", "CT_head", tables, rev)
    (tmp_path / "bad.py").write_text("mapping = {}\n")
    with pytest.raises(EvalDataError, match="section_map, findings_mapping"):
        load_mimic_iii_tables(tmp_path / "bad.py")
    with pytest.raises(EvalDataError, match="NOTEEVENTS.csv"):
        read_dataset("mimic-iii-noteevents", tmp_path, {}, "mimic-iii-summarization")


def test_summarization_pairs(tmp_path: Path) -> None:
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
