"""BiMed-MBench as released: the released files and folder read as published, and judge requests
byte-identical to mbzuai-oryx/BiMediX2 `BiMed-MBench/eval/eval_multimodal_chat_gpt_score.py` (English)
and `..._ara.py` (Arabic) with `eval/llm.py`.

`released_messages` below is a re-implementation of the released `conv_to_str` /
`compare_messages_gen`, written from reading those scripts; it shares no code or constants with
`bimedix2.eval.mbench`, so the comparison checks our builder against the released one.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.errors import ConfigError, EvalDataError
from bimedix2.eval.datasets import read_mbench
from bimedix2.eval.mbench import judge_messages
from bimedix2.eval.runner import RunConfig, load_results, run_eval
from bimedix2.types import GenParams, Message, Reply

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
RELEASED = FIX / "bimed-mbench-released" / "data" / "test_sets"
EN_FILE = RELEASED / "llava_med_eval_qa50_qa.jsonl"
AR_FILE = RELEASED / "llava_med_eval_qa50_qa_arabic_verified.jsonl"

# ---- the released scripts, re-implemented (typed from the released files) -----------------------
_EN_INSTRUCT = """We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above. The user asks the question on observing an image. For your reference, the visual content in the image is represented with caption describing the same image.
  Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.
  Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment."""  # noqa: E501
_AR_INSTRUCT = """We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above in 'Moders Standard Arabic' language. The user asks the question on observing an image. For your reference, the visual content in the image is represented with Arabic caption describing the same image.
  Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance. Deduct score if the answer is in a language other than 'Moders Standard Arabic'.
  Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment."""  # noqa: E501
_ROLE = "Assistant"


def _conv_to_str(instruct: str, fig_label, fig_caption, fig_context, question, ans1, ans2) -> str:  # noqa: ANN001
    return (
        f"[Context]\n"
        f"Figure Caption:\n{fig_label}: {fig_caption}\n\n"
        f"Figure Context:\n\t- {fig_context}\n\n"
        f"[Question]\n{question}\n\n"
        f"[{_ROLE} 1]\n{ans1}\n\n[End of {_ROLE} 1]\n\n"
        f"[{_ROLE} 2]\n{ans2}\n\n[End of {_ROLE} 2]\n\n"
        f"[System]\n{instruct}\n\n"
    )


def released_messages(question: dict, answer_text: str, script: str) -> list[dict[str, str]]:
    """What the released `main` + `infer` build for one question-file line and one answer-file line."""
    question = copy.deepcopy(question)
    question_copy = copy.deepcopy(question)
    question["question"] = question_copy["text"]
    question["ans1"] = question_copy.pop("gpt4_answer")
    question["ans2"] = answer_text
    s = copy.deepcopy(question)
    instruct = _EN_INSTRUCT if script == "eng" else _AR_INSTRUCT
    messages = [
        {
            "role": "system",
            "content": """'You are a helpful and precise assistant for checking the quality of the answer.""",
        }
    ]  # noqa: E501
    user = _conv_to_str(
        instruct, s["fig_label"], s["fig_caption"], s["in_text_mention"], s["question"], s["ans1"], s["ans2"]
    )  # noqa: E501
    messages.append({"role": "user", "content": user})
    return messages


def released_body(question: dict, answer_text: str, script: str) -> dict:
    """llm.py `make_api_call_to_gpt`: model, messages, temperature 0.0 - nothing else."""
    return {
        "model": "gpt-4o-2024-08-06",
        "messages": released_messages(question, answer_text, script),
        "temperature": 0.0,
    }  # noqa: E501


# ---- helpers ---------------------------------------------------------------------------------------
def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _answer(conv: Sequence[Message]) -> str:
    return f"Answer to: {conv[-1].content}\nSecond line."


class RecordingGenerator:
    """A fake Generator: records what it is asked and answers deterministically."""

    def __init__(self) -> None:
        self.calls: list[tuple[Sequence[Message], GenParams, str]] = []

    def generate_batch(self, conversations, params=None, sample_ids=None) -> list[Reply]:  # noqa: ANN001
        self.calls += [(c, params, sid) for c, sid in zip(conversations, sample_ids, strict=True)]
        return [Reply(_answer(c), "en", 1, 1, "stop") for c in conversations]


def _cfg(out: Path, data: Path, **kw) -> RunConfig:  # noqa: ANN003
    return RunConfig(out_dir=out, model="fake", data={"bimed-mbench": str(data)}, batch_size=2, **kw)


# ---- the judge messages -------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "language", "script"), [(EN_FILE, "en", "eng"), (AR_FILE, "ar", "ara")])
def test_judge_messages_byte_identical(path: Path, language: str, script: str) -> None:
    for rec in _records(path):
        for candidate in ("A short answer.", "  multi\nline\n\nanswer  ", "", "إجابة {with} braces %s"):
            ours = judge_messages(rec, candidate, language)
            theirs = released_messages(rec, candidate, script)
            assert ours == theirs
            assert [m["content"].encode("utf-8") for m in ours] == [m["content"].encode("utf-8") for m in theirs]


def test_in_text_mention_rendered_as_released() -> None:
    en, ar = _records(EN_FILE), _records(AR_FILE)
    by_kind = {type(r["in_text_mention"]).__name__ + repr(r["in_text_mention"])[:2]: r for r in en + ar}
    assert {"list[{", "NoneTypeNo", "str''"} <= set(by_kind)  # the fixtures hold every released case
    null = judge_messages(by_kind["NoneTypeNo"], "x", "en")[1]["content"]
    assert "Figure Context:\n\t- None\n\n[Question]" in null  # JSON null -> Python's None
    empty = judge_messages(by_kind["str''"], "x", "ar")[1]["content"]
    assert "Figure Context:\n\t- \n\n[Question]" in empty
    listed = judge_messages(en[0], "x", "en")[1]["content"]
    assert "\t- [{'tokens': 'A chest radiograph showed" in listed and "'start_tok': 9" in listed  # a list's repr
    assert judge_messages(en[0], "x", "en")[0]["content"].startswith("'You are")  # the stray quote, kept
    assert "Figure Caption:\nFigure 2.: Contrast-enhanced CT" in null  # label ": " caption


# ---- the released files and folder ------------------------------------------------------------------
def test_released_folder_and_files(tmp_path: Path) -> None:
    both = read_mbench(RELEASED)
    assert [s.id for s in both] == ["en-0", "en-1", "en-2", "ar-0", "ar-1", "ar-2"]
    assert read_mbench(RELEASED.parents[1]) == both  # the BiMed-MBench folder above data/test_sets
    assert both[2].text == "What type of cells are seen in the patient's biopsy?"  # <image> removed, stripped
    assert both[2].images[0].source == RELEASED / "images" / "33333333_fig3.jpg"
    assert [s.language for s in read_mbench(AR_FILE)] == ["ar"] * 3  # the Arabic file alone is Arabic
    assert read_mbench(EN_FILE, ("en", "ar")) == both[:3]
    assert read_mbench(RELEASED, ("ar",)) == both[3:]
    # language from the data, not the name: the Arabic file under an English-looking name, images beside it
    copy_dir = tmp_path / "elsewhere"
    shutil.copytree(RELEASED / "images", copy_dir / "images")
    shutil.copy(AR_FILE, copy_dir / "bimed-mbench_eng.jsonl")
    alone = read_mbench(copy_dir / "bimed-mbench_eng.jsonl")
    assert [s.id for s in alone] == ["ar-0", "ar-1", "ar-2"]
    assert alone[0].images[0].source == copy_dir / "images" / "11111111_F1.jpg"
    assert [s.id for s in read_mbench(copy_dir)] == ["ar-0", "ar-1", "ar-2"]  # the released scripts' file name


def test_old_layout_still_read() -> None:
    samples = read_mbench(FIX / "mbench")
    assert [s.id for s in samples] == ["en-1", "en-2", "ar-1"]
    assert samples[0].images[0].source == FIX / "mbench" / "cxr_1.jpg"  # images beside the files


def test_reader_errors_name_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="llava_med_eval_qa50_qa.jsonl"):
        read_mbench(tmp_path)
    rec = _records(EN_FILE)[0]
    del rec["in_text_mention"]
    (tmp_path / "q.jsonl").write_text(json.dumps(rec) + "\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"q.jsonl:1: missing field 'in_text_mention'.*null is allowed"):
        read_mbench(tmp_path / "q.jsonl")
    twice = tmp_path / "twice"
    twice.mkdir()
    shutil.copy(EN_FILE, twice / "llava_med_eval_qa50_qa.jsonl")
    shutil.copy(EN_FILE, twice / "llava_med_eval_qa50_qa_arabic_verified.jsonl")
    shutil.copytree(RELEASED / "images", twice / "images")
    with pytest.raises(EvalDataError, match="both hold en questions"):
        read_mbench(twice)
    shutil.copy(EN_FILE, tmp_path / "noimages.jsonl")
    with pytest.raises(EvalDataError, match=r"image .*11111111_F1.jpg not found"):
        read_mbench(tmp_path / "noimages.jsonl")


# ---- a paper-protocol run: what the model is asked, what the judge is sent ----------------------------
def _first_line_judge(body: dict) -> str:
    return "8 6\nAssistant 1 is better." if "'Moders Standard Arabic'" not in body["messages"][1]["content"] else "9 3"


def test_paper_run_sends_the_released_requests(tmp_path: Path) -> None:
    gen = RecordingGenerator()
    with FakeOpenAIServer(responder=_first_line_judge) as server:
        results = load_results(run_eval(["bimed-mbench"], gen, _cfg(tmp_path, RELEASED, judge_url=server.base_url)))
        bodies = server.bodies(outcome="ok")
    # generation as gen_ans.py / bimedix_inference.py: 0.1 / 1.0 / 1024, sampling, no steering
    assert {c[1] for c in gen.calls} == {
        GenParams(max_new_tokens=1024, temperature=0.1, top_p=1.0, do_sample=True, seed=0, steer_language=False)
    }
    convs = {sid: conv for conv, _, sid in gen.calls}
    assert convs["en-2"] == [
        Message("user", "What type of cells are seen in the patient's biopsy?", convs["en-2"][0].images)
    ]  # noqa: E501
    assert all(len(c) == 1 and len(c[0].images) == 1 for c in convs.values())
    # the judge requests: exactly the released bodies (model, messages, temperature; no max_tokens)
    expected = []
    for path, script, lang in ((EN_FILE, "eng", "en"), (AR_FILE, "ara", "ar")):
        for rec in _records(path):
            expected.append(released_body(rec, _answer(convs[f"{lang}-{rec['question_id']}"]), script))
    key = lambda b: json.dumps(b, sort_keys=True, ensure_ascii=False)  # noqa: E731
    assert sorted(map(key, bodies)) == sorted(map(key, expected))
    assert all(set(b) == {"model", "messages", "temperature"} for b in bodies)
    entry = results["tasks"]["bimed-mbench"]
    assert entry["protocol"] == "paper" and results["protocol"] == "paper"
    assert entry["judge"]["model"] == "gpt-4o-2024-08-06" and entry["judge"]["max_tokens"] is None
    en, ar = entry["metrics"]["en"], entry["metrics"]["ar"]
    assert en["overall"] == pytest.approx(75.0) and ar["overall"] == pytest.approx(100 / 3)
    # per-group judge means and sizes beside the relative scores, in the released table's groups
    assert en["groups"]["conversation"] == {
        "reference_score": 8.0,
        "candidate_score": 6.0,
        "relative_score": pytest.approx(75.0),
        "n": 2,
    }
    assert list(en["groups"]) == [
        "conversation",
        "detailed_description",
        "chest_xray",
        "histology",
        "ct_scan",
        "overall",
    ]  # noqa: E501
    # the Arabic file's Arabic type labels: grouped under their own label, outside the released table
    assert set(ar["groups"]) == {"conversation", "chest_xray", "histology", "ct_scan", "overall"}
    assert {k: v["n"] for k, v in ar["other_groups"].items()} == {"وصف تفصيلي": 1, "محادثة": 1}
    assert ar["by_type"] == {"Conversation": pytest.approx(100 / 3)} and ar["n"] == 3


def test_paper_judge_needs_an_endpoint_and_names_the_released_judge(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--judge-url.*gpt-4o-2024-08-06"):
        run_eval(["bimed-mbench"], RecordingGenerator(), _cfg(tmp_path, RELEASED))
