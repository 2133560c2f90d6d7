"""`bimedix2 eval prepare-mcq-ar`: the translation pipeline's Arabic MCQ records become Arabic MCQ tasks in
the format the English ones run in (Hub-layout files + task YAMLs including lm-eval's own tasks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bimedix2.cli import main
from bimedix2.data.schema import Record, Turn
from bimedix2.data.sources.common import mcq_answer, mcq_prompt
from bimedix2.errors import EvalDataError
from bimedix2.eval.mcq_prepare import gold_option, mcq_from_record, prepare_mcq_arabic, split_question
from bimedix2.eval.results import load_results
from bimedix2.eval.runner import RunConfig, run_eval

SOURCE = Path(__file__).resolve().parents[2] / "fixtures" / "eval" / "mcq_translated" / "translated.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_pipelines_mcq_prompt_reads_back() -> None:
    options = {"A": "yes", "B": "no", "C": "maybe"}
    text = mcq_prompt("Does aspirin help?", options, context="Trial of aspirin.\nIt helped.")
    assert split_question(text) == ("Does aspirin help?", ("yes", "no", "maybe"), "Trial of aspirin.\nIt helped.")
    assert gold_option(mcq_answer("B", "no", "Because."), ("yes", "no", "maybe")) == 1
    arabic = "السؤال: ما الدواء؟\nالخيارات:\nأ. الأول\nب. الثاني\nج. الثالث\nد. الرابع\nأجب بالخيار الصحيح."
    assert split_question(arabic) == ("ما الدواء؟", ("الأول", "الثاني", "الثالث", "الرابع"), "")
    with pytest.raises(EvalDataError, match="no option lines"):
        split_question("السؤال: بلا خيارات؟")


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("الإجابة الصحيحة هي D. فيتامين C", 3),
        ("الإجابة الصحيحة هي فيتامين C.", 3),  # no letter: the option text, not the "C." inside it
        ("الإجابة الصحيحة هي فيتامينَ B12، لأن ...", 1),  # diacritics normalised away
        ("الإجابة الصحيحة هي (B)", 1),
        ("لا أعرف", None),
    ],
)
def test_gold_option_compares_arabic_normalised(answer: str, gold: int | None) -> None:
    assert gold_option(answer, ("الحديد", "فيتامين B12", "حمض الفوليك", "فيتامين C")) == gold


def test_record_id_is_the_english_source_id() -> None:
    record = Record(
        "x-ar", (Turn("human", "السؤال: س؟\nA. نعم\nB. لا\nC. ربما"), Turn("gpt", "الإجابة الصحيحة هي C. ربما")),
        language="ar", source="pubmedqa", task="mcq", split="test", provenance={"translated_from": "pubmedqa-9"},
    )  # fmt: skip
    rec = mcq_from_record(record)
    assert (rec.id, rec.question, rec.gold) == ("pubmedqa-9", "س؟", 2)


def test_prepare_writes_hub_layouts_and_lm_eval_tasks(tmp_path: Path) -> None:
    out = tmp_path / "mcq-ar"
    assert main(["eval", "prepare-mcq-ar", str(SOURCE), str(out)]) == 0
    medqa = _lines(out / "ar" / "medqa" / "test.json")  # GBaker/MedQA-USMLE-4-options-hf fields
    assert [(r["id"], r["label"]) for r in medqa] == [("medqa-test-1", 0), ("medqa-test-2", 1)]
    assert medqa[0]["ending3"] == "فيتامين C" and medqa[0]["sent1"].startswith("امرأة تبلغ")
    medmcqa = _lines(out / "ar" / "medmcqa" / "validation.jsonl")  # lm-eval scores MedMCQA's validation split
    assert medmcqa[0]["cop"] == 2 and medmcqa[0]["opc"] == "الضمور"
    pub = _lines(out / "ar" / "pubmedqa" / "test.jsonl")
    assert len(pub) == 1 and pub[0]["final_decision"] == "yes" and pub[0]["CONTEXTS"][0].startswith("عُيّن")
    assert pub[0]["QUESTION"] == "هل يقلل الأسبرين خطر تكرار السكتة الدماغية؟"
    report = json.loads((out / "ar" / "prepare_report.json").read_text(encoding="utf-8"))
    assert report["written"] == {"medqa": 2, "medmcqa": 1, "pubmedqa": 1}
    assert report["skipped"] == {
        "medqa: split train (kept: test)": 1,
        "pubmedqa: unreadable": 1,
        "not an Arabic MCQ record": 1,
    }
    task = yaml.safe_load((out / "lm_eval_tasks" / "bimedix2_medqa_ar.yaml").read_text(encoding="utf-8"))
    assert task["include"].endswith("lm_eval/tasks/medqa/medqa.yaml") and task["task"] == "bimedix2_medqa_ar"


def test_prepared_tasks_render_with_lm_evals_templates(tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager

    tasks, _ = prepare_mcq_arabic(SOURCE, tmp_path)
    loaded = TaskManager(include_path=str(tmp_path / "lm_eval_tasks")).load(sorted(tasks))["tasks"]
    medqa = loaded["bimedix2_medqa_ar"]
    doc = medqa.eval_docs[0]
    assert medqa.doc_to_text(doc) == (
        "Question: امرأة تبلغ من العمر 23 عامًا تعاني من التعب وفقر الدم صغير الكريات. ما النقص الأكثر احتمالًا؟\n"
        "A. الحديد\nB. فيتامين B12\nC. حمض الفوليك\nD. فيتامين C\nAnswer:"
    )
    pub = loaded["bimedix2_pubmedqa_ar"]
    assert pub.doc_to_choice(pub.eval_docs[0]) == ["yes", "no", "maybe"]


def test_prepared_folder_runs_as_the_mcq_task(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    prepare_mcq_arabic(SOURCE, tmp_path / "data")
    cfg = RunConfig(out_dir=tmp_path / "run", model=str(tiny_causal_lm_path), data={"mcq": str(tmp_path / "data")})
    entry = load_results(run_eval(["mcq"], None, cfg))["tasks"]["mcq"]
    assert set(entry["metrics"]) == {"ar"} and set(entry["metrics"]["ar"]) == {
        "medqa",
        "medmcqa",
        "pubmedqa",
        "average",
    }
    assert entry["lm_eval"]["tasks"]["bimedix2_medmcqa_ar"]["definition"] == "lm-eval medmcqa"
