"""MCQ as the paper ran it: our task for each dataset is lm-eval's own task pointed at local files.

For fixture docs in each Hub dataset's layout, the task we write (through `TaskManager(include_path=...)`,
as `lm_eval --include_path` loads it) and lm-eval's registered task built by the same TaskManager with
only its data source overridden must agree on every doc's `doc_to_text`, `doc_to_choice`,
`doc_to_target`, zero-shot context and request (context, continuation) - and the prompts are the
templates lm-eval ships (spelled out below for one doc each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bimedix2.errors import EvalDataError
from bimedix2.eval.datasets.mcq import decision_of, hub_doc, lettered_query, mcq_record
from bimedix2.eval.lm_eval_tasks import PAPER_DATASETS, upstream_config, upstream_yaml
from bimedix2.eval.mcq import write_tasks
from bimedix2.eval.results import load_results
from bimedix2.eval.runner import RunConfig, run_eval

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
HUB = FIX / "mcq_hub"
HUB_DATASETS = ("medqa", "medmcqa", "pubmedqa", "mmlu_anatomy", "mmlu_clinical_knowledge")
EXPECTED_FIRST_PROMPT = {
    "medqa": "Question: A 23-year-old woman presents with fatigue and a microcytic anemia. Which deficiency is most "
    "likely?\nA. Iron\nB. Vitamin B12\nC. Folate\nD. Vitamin C\nAnswer:",
    "medmcqa": "Question: Chronic urethral obstruction due to benign prismatic hyperplasia can lead to the following "
    "change in kidney parenchyma\nChoices:\nA. Hyperplasia\nB. Hypertrophy\nC. Atrophy\nD. Dyplasia\nAnswer:",
    "pubmedqa": "Abstract: Patients with a first stroke were randomised to aspirin or placebo.\nRecurrent stroke was "
    "lower with aspirin.\nQuestion: Does aspirin reduce the risk of recurrent stroke?\nAnswer:",
    "mmlu_anatomy": "The following are multiple choice questions (with answers) about anatomy.\n\nWhich of the "
    "following is the body cavity that contains the pituitary gland?\nA. Abdominal\nB. Cranial\nC. Pleural\n"
    "D. Spinal\nAnswer:",
}


@pytest.fixture(scope="module")
def task_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    """{dataset: (our task, lm-eval's own task with only the data overridden)}, with requests built."""
    from lm_eval.tasks import TaskManager

    include = tmp_path_factory.mktemp("mcq") / "lm_eval_tasks"
    written = write_tasks(HUB_DATASETS, ("en",), HUB, include)
    manager = TaskManager(include_path=str(include))
    ours = manager.load(list(written))["tasks"]
    overrides = []
    for task in written.values():
        data = {k: v for k, v in task.config.items() if k not in ("include", "task", "output_type", "tag")}
        overrides.append({"task": PAPER_DATASETS[task.dataset].task, **data})
    reference = manager.load([{"group": "lm_eval_reference", "task": overrides}])["tasks"]
    pairs = {}
    for name, task in written.items():
        mine, theirs = ours[name], reference[PAPER_DATASETS[task.dataset].task]
        for t in (mine, theirs):
            t.build_all_requests(limit=None, rank=0, world_size=1)
        pairs[task.dataset] = (mine, theirs)
    return pairs


@pytest.mark.parametrize("dataset", HUB_DATASETS)
def test_our_task_is_lm_evals_own(task_pairs: dict[str, tuple[Any, Any]], dataset: str) -> None:
    mine, theirs = task_pairs[dataset]
    docs, ref_docs = list(mine.eval_docs), list(theirs.eval_docs)
    assert docs == ref_docs and docs
    for doc in docs:
        assert mine.doc_to_text(doc) == theirs.doc_to_text(doc)
        assert mine.doc_to_choice(doc) == theirs.doc_to_choice(doc)
        assert mine.doc_to_target(doc) == theirs.doc_to_target(doc)
        assert mine.fewshot_context(doc, num_fewshot=0) == theirs.fewshot_context(doc, num_fewshot=0)
    assert [(i.doc_id, i.arguments) for i in mine.instances] == [(i.doc_id, i.arguments) for i in theirs.instances]
    assert mine.config.description == theirs.config.description
    assert mine.config.target_delimiter == theirs.config.target_delimiter == " "
    assert [m["metric"] for m in mine.config.metric_list] == [m["metric"] for m in theirs.config.metric_list]


@pytest.mark.parametrize("dataset", sorted(EXPECTED_FIRST_PROMPT))
def test_prompts_are_the_templates_lm_eval_ships(task_pairs: dict[str, tuple[Any, Any]], dataset: str) -> None:
    mine, _ = task_pairs[dataset]
    first = [i.arguments for i in mine.instances if i.doc_id == 0]
    choices = [" yes", " no", " maybe"] if dataset == "pubmedqa" else [" A", " B", " C", " D"]
    assert first == [(EXPECTED_FIRST_PROMPT[dataset], c) for c in choices]


def test_written_yaml_includes_lm_evals_and_overrides_only_the_data(tmp_path: Path) -> None:
    task = write_tasks(["mmlu_anatomy"], ["en"], HUB, tmp_path)["bimedix2_mmlu_anatomy_en"]
    text = yaml.safe_load((tmp_path / "bimedix2_mmlu_anatomy_en.yaml").read_text(encoding="utf-8"))
    assert text["include"] == str(upstream_yaml(PAPER_DATASETS["mmlu_anatomy"]))
    assert text["include"].endswith("lm_eval/tasks/mmlu/default/mmlu_anatomy.yaml")
    assert text["dataset_path"] == "parquet" and text["dataset_name"] is None and text["tag"] is None
    files = text["dataset_kwargs"]["data_files"]
    assert set(files) == {"test", "dev"} and files["test"][0].endswith("mmlu/anatomy/test-00000-of-00001.parquet")
    assert task.definition == "lm-eval mmlu_anatomy" and "fewshot_split" not in text  # dev is there
    medqa = write_tasks(["medqa"], ["en"], HUB, tmp_path)["bimedix2_medqa_en"].config
    assert set(medqa["dataset_kwargs"]["data_files"]) == {"test", "validation"}  # dev.json is the validation split
    assert medqa["training_split"] is None and "validation_split" not in medqa


def test_missing_test_split_names_the_file_to_provide(tmp_path: Path) -> None:
    (tmp_path / "en" / "medmcqa" / "data").mkdir(parents=True)
    (tmp_path / "en" / "medmcqa" / "data" / "train-00000-of-00001.parquet").write_bytes(b"")
    with pytest.raises(EvalDataError, match=r"no 'validation' split of openlifescienceai/medmcqa"):
        write_tasks(["medmcqa"], ["en"], tmp_path, tmp_path / "out")


def test_generic_records_render_as_lm_evals_task(task_pairs: dict[str, tuple[Any, Any]]) -> None:
    """A generic-layout record converted to the Hub fields renders exactly as the Hub row does."""
    medqa, _ = task_pairs["medqa"]
    rec = mcq_record(
        {"question": medqa.eval_docs[0]["sent1"], "options": ["Iron", "Vitamin B12", "Folate", "Vitamin C"],
         "answer": "A", "id": "x"}, "t", "1",
    )  # fmt: skip
    assert medqa.doc_to_text(hub_doc("medqa", rec)) == EXPECTED_FIRST_PROMPT["medqa"]
    # USMLE (no lm-eval task): medqa_4options' template, for any number of options
    assert lettered_query(rec.question, rec.options) == EXPECTED_FIRST_PROMPT["medqa"]
    pub, _ = task_pairs["pubmedqa"]
    arabic = mcq_record({"question": "هل؟", "options": ["نعم", "لا", "ربما"], "answer": 2, "context": "سياق"}, "t", "1")
    doc = hub_doc("pubmedqa", arabic)
    assert doc["final_decision"] == "maybe" and pub.doc_to_target(doc) == "maybe"
    assert pub.doc_to_text(doc) == "Abstract: سياق\nQuestion: هل؟\nAnswer:"
    assert decision_of("  نَعَم.") == "yes" and decision_of("Maybe") == "maybe" and decision_of("perhaps") is None
    with pytest.raises(EvalDataError, match="4 options"):
        hub_doc("medmcqa", mcq_record({"question": "q", "options": ["a", "b"], "answer": 0}, "t", "1"))


def test_upstream_configs_are_the_installed_lm_evals() -> None:
    for entry in PAPER_DATASETS.values():
        cfg = upstream_config(upstream_yaml(entry))
        assert cfg["task"] == entry.task and cfg["output_type"] == "multiple_choice"
        assert cfg["dataset_path"] == entry.hub and cfg.get("dataset_name") == entry.config


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_scored_end_to_end_with_lm_evals_tasks(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    cfg = RunConfig(out_dir=tmp_path, model=str(tiny_causal_lm_path), data={"mcq": str(HUB)}, batch_size=4)
    entry = load_results(run_eval(["mcq"], None, cfg))["tasks"]["mcq"]
    assert entry["protocol"] == "paper"
    assert set(entry["metrics"]["en"]) == {*HUB_DATASETS, "usmle", "average"}
    tasks = entry["lm_eval"]["tasks"]
    assert tasks["bimedix2_medqa_en"]["definition"] == "lm-eval medqa_4options"
    assert tasks["bimedix2_usmle_en"]["definition"].startswith("bimedix2 (lm-eval medqa_4options' doc_to_text")
    assert tasks["bimedix2_pubmedqa_en"]["n_samples"]["effective"] == 2
    rows = _lines(tmp_path / "mcq" / "scored.jsonl")
    assert len(rows) == 2 + 2 + 2 + 2 + 1 + 2  # medqa, medmcqa, pubmedqa, anatomy, clinical knowledge, usmle
    usmle = _lines(tmp_path / "mcq" / "lm_eval_tasks" / "docs" / "en" / "usmle.jsonl")
    assert usmle[0]["choices"] == ["A", "B", "C", "D", "E"] and usmle[0]["query"].startswith("Question: A 45-year")


def test_toolkit_protocol_uses_our_prompt_for_generic_files(tmp_path: Path) -> None:
    tasks = write_tasks(["medqa"], ["ar"], FIX / "mcq", tmp_path, protocol="toolkit")
    task = tasks["bimedix2_medqa_ar"]
    assert task.definition == "bimedix2 toolkit prompt" and task.config["doc_to_text"] == "{{query}}"
    docs = _lines(tmp_path / "docs" / "ar" / "medqa.jsonl")
    assert docs[0]["query"].endswith("\nD. فيتامين ج\nالإجابة:") and docs[0]["choices"] == ["A", "B", "C", "D"]
    # letters without a leading space: lm-eval prepends its target delimiter (" A", never "  A")
    assert "target_delimiter" not in task.config
