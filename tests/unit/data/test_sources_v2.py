"""Sources added for BiMed-V at the paper's scale: PubMedQA PQA-A / PQA-U, PMC-VQA's open form,
PMC-OA captions (stage-1 layout) and BiMediX v1's open-QA sources, on fixtures in their release layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bimedix2.data.io import iter_records
from bimedix2.data.schema import record_to_json, validate_record
from bimedix2.data.sources import BuildReport, build_source, iter_source
from bimedix2.data.sources.pmc_oa import INSTRUCTIONS, instruction_for
from bimedix2.errors import RecordError

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "data"
STAGE1_FIXTURE = Path(__file__).resolve().parents[1] / "train" / "fixtures" / "captions.json"


def build(name: str, root: str | Path) -> tuple[list, BuildReport]:
    report = BuildReport(name)
    return list(iter_source(name, root if isinstance(root, Path) else FIX / root, report)), report


# -- PubMedQA: which subset gives what -------------------------------------------------------


def test_pqa_a_is_yes_no_mcq_with_the_long_answer_as_explanation() -> None:
    records, report = build("pubmedqa-artificial", "pubmedqa")
    assert [r.id for r in records] == ["pubmedqa-pqaa-25429730", "pubmedqa-pqaa-25433161"]
    assert {r.split for r in records} == {"train"} and {r.task for r in records} == {"mcq"}
    assert [r.conversations[1].value.split("\n")[0] for r in records] == [
        "The correct answer is A. yes",
        "The correct answer is B. no",
    ]
    assert records[1].conversations[1].value.endswith("Explanation: The vagus nerve does not contribute.")
    prompt = records[0].conversations[0].value
    assert prompt.startswith("Context: Chronic rhinosinusitis is common. ILC2 frequencies were higher")
    assert "Question: Are group 2 innate lymphoid cells" in prompt and "C. maybe" in prompt
    assert records[0].provenance["dataset"] == "PubMedQA PQA-A" and report.skipped == {}


def test_pqa_u_is_open_qa_from_the_long_answer_only() -> None:
    records, report = build("pubmedqa-unlabeled", "pubmedqa")
    assert [r.id for r in records] == ["pubmedqa-pqau-14499029"]
    (record,) = records
    assert record.task == "chat" and record.split == "train" and record.provenance["dataset"] == "PubMedQA PQA-U"
    assert "Options:" not in record.conversations[0].value  # no label, so never an MCQ
    assert record.conversations[0].value.startswith("Context: Objective sentence. Of 330 women, 41%")
    assert record.conversations[1].value == "Pelvic pain was associated with defecatory symptoms, at a dose of 5 mg."
    assert report.skipped == {"no long answer": 1}


def test_pubmedqa_subsets_need_their_own_file_and_bad_items_are_named(tmp_path: Path) -> None:
    shutil.copy(FIX / "pubmedqa" / "ori_pqal.json", tmp_path / "ori_pqal.json")
    with pytest.raises(RecordError, match=r"ori_pqaa.json: file not found"):
        build("pubmedqa-artificial", tmp_path)
    bad = {"1": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "Y"}}
    (tmp_path / "ori_pqaa.json").write_text(json.dumps(bad))
    with pytest.raises(RecordError, match=r"ori_pqaa.json\[1\]: final_decision 'Y' is not yes/no/maybe"):
        build("pubmedqa-artificial", tmp_path)
    (tmp_path / "ori_pqau.json").write_text(json.dumps({"7": {"QUESTION": "q", "CONTEXTS": "c", "LONG_ANSWER": "a"}}))
    with pytest.raises(RecordError, match=r"ori_pqau.json\[7\]: CONTEXTS must be a list of strings"):
        build("pubmedqa-unlabeled", tmp_path)
    (tmp_path / "ori_pqau.json").write_text('{"7": {"QUESTION": "q",')
    with pytest.raises(RecordError, match=r"ori_pqau.json"):
        build("pubmedqa-unlabeled", tmp_path)


# -- PMC-VQA: open (short-answer) form beside the MCQ form -----------------------------------


def test_pmc_vqa_open_form_is_question_to_answer_text() -> None:
    open_form, report = build("pmc-vqa-open", "pmc-vqa")
    mcq, _ = build("pmc-vqa", "pmc-vqa")
    assert [r.images for r in open_form] == [r.images for r in mcq] and [r.split for r in open_form] == [
        r.split for r in mcq
    ]
    assert [r.id for r in open_form] == ["pmc-vqa-open-train-1", "pmc-vqa-open-train-2"]
    assert open_form[0].conversations[0].value == "<image>\nWhat imaging modality was used?"
    assert [r.conversations[1].value for r in open_form] == ["CT scan", "Left"]
    assert report.missing_images == ["pmc-vqa-open-test-1"]


def test_pmc_vqa_open_form_falls_back_to_the_labelled_choice(tmp_path: Path) -> None:
    shutil.copytree(FIX / "pmc-vqa" / "images", tmp_path / "images")
    (tmp_path / "train.csv").write_text(
        "Figure_path,Question,Answer,Choice A,Choice B,Choice C,Choice D,Answer_label\n"
        "PMC1064097_F1.jpg,Which organ?,,A:Liver,B:Kidney,C:Spleen,D:Lung,C\n"
        "PMC1064097_F2.jpg,Which side?,Left,A:Left,B:Right,C:Both,D:Neither,E\n",
        encoding="utf-8",
    )
    with pytest.raises(RecordError, match=r"train.csv:3: Answer_label 'E' is not A-D"):
        build("pmc-vqa-open", tmp_path)
    rows = (tmp_path / "train.csv").read_text().splitlines()[:2]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (record,), _ = build("pmc-vqa-open", tmp_path)
    assert record.conversations[1].value == "Spleen"


# -- PMC-OA: stage-1 image-caption pairs -----------------------------------------------------


def test_pmc_oa_records_are_in_the_stage1_pretrain_layout(tmp_path: Path) -> None:
    records, report = build("pmc-oa", "pmc-oa")
    assert [r.id for r in records] == ["pmc-oa-train-1", "pmc-oa-train-2"]
    assert report.skipped == {"missing image": 1, "empty caption": 1} and report.missing_images == ["pmc-oa-train-3"]
    stage1 = json.loads(STAGE1_FIXTURE.read_text())[0]
    for record in records:
        obj = record_to_json(record)
        assert {"id", "image", "conversations"} <= set(obj) and set(stage1) <= set(obj)
        human, gpt = obj["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"] == f"<image>\n{instruction_for(record.provenance['image'])}"
        assert human["value"].removeprefix("<image>\n") in INSTRUCTIONS
        assert record.task == "caption" and validate_record(record) == []
    assert records[0].images == ("caption_T060_filtered_top4_sep_v0_subfigures/PMC212319_Fig3_4.jpg",)
    assert records[1].conversations[1].value == "H&E stain, x40: glandular tissue with atypical nuclei."
    out = tmp_path / "stage1.jsonl"
    build_source("pmc-oa", FIX / "pmc-oa", out, progress=False)
    again = tmp_path / "again.jsonl"
    build_source("pmc-oa", FIX / "pmc-oa", again, progress=False)
    assert out.read_bytes() == again.read_bytes()  # the instruction choice is deterministic


def test_pmc_oa_output_reads_as_stage1_training_data_like_the_stage1_fixture(tmp_path: Path) -> None:
    from bimedix2.train.records import read_records

    out = tmp_path / "pmc_oa_stage1.jsonl"
    build_source("pmc-oa", FIX / "pmc-oa", out, progress=False)
    ours = read_records([out], image_root=FIX / "pmc-oa")
    theirs = read_records([STAGE1_FIXTURE])
    shape = [(m.role, len(m.images)) for m in theirs[0].messages]
    assert shape == [("user", 1), ("assistant", 0)]
    for record in ours:
        assert [(m.role, len(m.images)) for m in record.messages] == shape
        assert record.messages[0].content in INSTRUCTIONS and Path(record.messages[0].images[0].source).is_file()
    assert ours[0].messages[1].content == "Axial CT: a hypodense lesion in the left lobe of the liver."


def test_pmc_oa_split_files_images_folder_and_bad_lines(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    shutil.copy(
        FIX / "pmc-oa" / "caption_T060_filtered_top4_sep_v0_subfigures" / "PMC212319_Fig3_4.jpg", tmp_path / "images"
    )
    (tmp_path / "valid.jsonl").write_text('{"image": "PMC212319_Fig3_4.jpg", "caption": "Axial CT."}\n')
    (record,), _ = build("pmc-oa", tmp_path)
    assert record.split == "validation" and record.images == ("images/PMC212319_Fig3_4.jpg",)
    (tmp_path / "valid.jsonl").write_text('{"image": "a.jpg", "caption": "x"}\n{"image": "b.jpg"}\n')
    with pytest.raises(RecordError, match=r"valid.jsonl:2: missing field\(s\) \['caption'\]"):
        build("pmc-oa", tmp_path)
    (tmp_path / "valid.jsonl").write_text('{"image": "../../etc/passwd", "caption": "x"}\n')
    with pytest.raises(RecordError, match=r"valid.jsonl:1: image must be a relative file name"):
        build("pmc-oa", tmp_path)
    (tmp_path / "valid.jsonl").write_text('{"image": "a.jpg", "caption": "x"\n')
    with pytest.raises(RecordError, match=r"valid.jsonl:1"):
        build("pmc-oa", tmp_path)
    (tmp_path / "valid.jsonl").unlink()
    with pytest.raises(RecordError, match=r"neither pmc_oa.jsonl nor any of"):
        build("pmc-oa", tmp_path)


# -- BiMediX v1's open-QA sources ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "question", "answer", "skipped"),
    [
        ("healthcaremagic", "Hi doctor, I have had a dry cough", "Hi, a cough lasting 3 weeks", 1),
        ("icliniq", "Hello doctor, my child has a rash", "Hi. A rash after amoxicillin", 0),
        ("medicationqa", "how does rivatigmine and otc", "Tell your doctor about all the medicines you take,\n", 1),
        ("liveqa", "Can diabetes cause blurred vision?", "Yes. High blood sugar", 0),
        ("medical-meadow-flashcards", "What is the relationship between very low Mg2+", "Very low Mg2+ levels", 0),
        ("medical-meadow-wikidoc", "Can you provide an overview of the lung's", "Squamous cell carcinoma", 0),
    ],
)
def test_open_qa_sources_read_their_release_layouts(name: str, question: str, answer: str, skipped: int) -> None:
    (record,), report = build(name, name)
    assert record.id == f"{name}-0" and record.source == name and record.task == "chat" and record.language == "en"
    assert record.conversations[0].value.startswith(question)
    assert record.conversations[1].value.startswith(answer)
    assert record.images == () and validate_record(record) == []
    assert report.skipped == ({"empty question or answer": 1} if skipped else {})


def test_open_qa_provenance_keeps_what_the_release_adds() -> None:
    (hcm,), _ = build("healthcaremagic", "healthcaremagic")
    assert hcm.provenance["instruction"].startswith("If you are a doctor")
    assert hcm.provenance["file"] == "HealthCareMagic-100k.json"
    (med,), _ = build("medicationqa", "medicationqa")
    assert med.provenance["focus"] == "rivastigmine" and med.provenance["question_type"] == "Interaction"
    (live,), _ = build("liveqa", "liveqa")
    assert live.provenance["qid"] == "TQ1"


def test_icliniq_instruction_layout_and_arabic_rows(tmp_path: Path) -> None:
    question = "دكتور، عندي صداع منذ ٣ أيام مع غثيان. ما السبب؟"
    reply = "قد يكون الصداع النصفي؛ راجع الطبيب إذا استمر أكثر من أسبوع."
    (tmp_path / "icliniq.json").write_text(
        json.dumps([{"instruction": "If you are a doctor", "input": question, "output": reply}], ensure_ascii=False),
        encoding="utf-8",
    )
    (record,), _ = build("icliniq", tmp_path)
    assert record.language == "ar" and validate_record(record) == []
    assert record.conversations[0].value == question and record.conversations[1].value == reply  # byte for byte
    out = tmp_path / "out.jsonl"
    build_source("icliniq", tmp_path, out, progress=False)
    assert next(iter_records(out)).conversations[1].value == reply


def test_medicationqa_reads_the_released_xlsx_like_its_csv(tmp_path: Path) -> None:
    from_xlsx, report = build("medicationqa", "medicationqa-xlsx")
    from_csv, _ = build("medicationqa", "medicationqa")
    assert [r.conversations for r in from_xlsx] == [r.conversations for r in from_csv] and len(from_xlsx) == 1
    assert from_xlsx[0].provenance["file"] == "MedInfo2019-QA-Medications.xlsx"
    assert from_xlsx[0].provenance["focus"] == "rivastigmine" and report.skipped == {"empty question or answer": 1}
    import zipfile

    book = tmp_path / "MedInfo2019-QA-Medications.xlsx"
    with zipfile.ZipFile(FIX / "medicationqa-xlsx" / book.name) as src, zipfile.ZipFile(book, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            dst.writestr(item, data.replace(b"<t>Answer</t>", b"<t>Reply</t>") if "sharedStrings" in item else data)
    with pytest.raises(RecordError, match=r"MedInfo2019-QA-Medications.xlsx: missing column\(s\) \['Answer'\]"):
        build("medicationqa", tmp_path)


def test_open_qa_bad_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "HealthCareMagic-100k.json").write_text('{"instruction": "x"}')
    with pytest.raises(RecordError, match=r"HealthCareMagic-100k.json: expected a JSON array of objects"):
        build("healthcaremagic", tmp_path)
    (tmp_path / "HealthCareMagic-100k.json").write_text('[{"instruction": "x", "input": "q", "output": 3}]')
    with pytest.raises(RecordError, match=r"HealthCareMagic-100k.json\[0\]: output must be a string, got int"):
        build("healthcaremagic", tmp_path)
    (tmp_path / "HealthCareMagic-100k.json").write_text('[{"input": "q", "output": "a"}]')
    with pytest.raises(RecordError, match=r"HealthCareMagic-100k.json\[0\]: missing field\(s\) \['instruction'\]"):
        build("healthcaremagic", tmp_path)

    med = tmp_path / "med"
    med.mkdir()
    with pytest.raises(RecordError, match=r"no MedicationQA file \(MedInfo2019-QA-Medications.xlsx or "):
        build("medicationqa", med)
    (med / "MedInfo2019-QA-Medications.xlsx").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RecordError, match=r"MedInfo2019-QA-Medications.xlsx: not a readable .xlsx workbook"):
        build("medicationqa", med)
    (med / "MedInfo2019-QA-Medications.xlsx").unlink()
    (med / "medication.csv").write_text("Question,Reply\nq,a\n")
    with pytest.raises(RecordError, match=r"medication.csv: missing column\(s\) \['Answer'\]"):
        build("medicationqa", med)
    (med / "other.csv").write_text("Question,Answer\nq,a\n")
    with pytest.raises(RecordError, match=r"found \['medication.csv', 'other.csv'\]"):
        build("medicationqa", med)

    live = tmp_path / "live"
    live.mkdir()
    (live / "test.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": "q2"}\n')
    with pytest.raises(RecordError, match=r"test.jsonl:2: missing field\(s\) \['answer'\]"):
        build("liveqa", live)
