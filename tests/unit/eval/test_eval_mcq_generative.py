"""`--mcq-mode generative`: the strict answer-letter parser, the prompt, the Hub-layout reader, and the
end-to-end run (through the fake endpoint and in-process) with unparsed replies counted, never scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.eval.datasets.mcq import McqRecord
from bimedix2.eval.kinds import get_kind
from bimedix2.eval.mcq_generative import collect_questions, generative_prompt, parse_letter
from bimedix2.eval.report import render_report
from bimedix2.eval.runner import RunConfig, load_results, run_eval
from bimedix2.types import Reply

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
OPTIONS = ("Iron", "Vitamin B12", "Vitamin C", "Folate")


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("b", "B"),
        ("  **B**  ", "B"),
        ("Answer: B", "B"),
        ("answer: B.", "B"),
        ("The answer is B", "B"),
        ("The answer is B.", "B"),
        ("The correct answer is (C).", "C"),
        ("Final answer: D", "D"),
        ("B. Vitamin B12", "B"),  # the chosen option's own text is not another letter
        ("C. Vitamin C", "C"),
        ("(A) Iron", "A"),
        ("I think the answer is A.", "A"),  # "I" is no option letter of a 4-option question
        ("الإجابة: ب", "B"),
        ("الإجابة الصحيحة هي B", "B"),
        ("الاجابة: (ج)", "C"),
        ("ب", "B"),
        ("د.", "D"),
    ],
)
def test_parser_accepts(reply: str, letter: str) -> None:
    assert parse_letter(reply, 4, OPTIONS) == letter


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I am not sure.",
        "Iron deficiency",  # no letter
        "A or B",
        "B and C are both plausible",
        "The answer is B, not A.",
        "Answer: B. Answer: C.",
        "The answer is B because vitamin C is wrong",  # names C as well
        "الإجابة: ب أو ج",
        "E",  # past the four options
        "The answer is E.",
        "the answer is a deficiency of iron",  # lowercase article, not a letter
        "Bleeding",  # a word starting with an option letter
    ],
)
def test_parser_rejects(reply: str) -> None:
    assert parse_letter(reply, 4, OPTIONS) is None


def test_five_options_allow_e() -> None:
    assert parse_letter("E.", 5) == "E" and parse_letter("الإجابة: هـ", 5) == "E"


def test_prompt_lists_the_options_and_the_fixed_instruction() -> None:
    rec = McqRecord("q", "Which deficiency?", OPTIONS, 0, context="A 23-year-old woman.")
    assert generative_prompt(rec, "en") == (
        "A 23-year-old woman.\n\nWhich deficiency?\n\nA. Iron\nB. Vitamin B12\nC. Vitamin C\nD. Folate\n\n"
        "Answer with the letter of the correct option (A, B, C or D) only."
    )
    ar = generative_prompt(McqRecord("q", "ما النقص؟", ("نعم", "لا", "ربما"), 0), "ar")
    assert ar.endswith(
        "A. نعم\nB. لا\nC. ربما\n\nأجب بحرف الخيار الصحيح فقط (A, B أو C)."
    )  # Latin letters, as the data


def test_hub_layout_folders_are_read() -> None:
    questions = collect_questions(
        ("medqa", "medmcqa", "pubmedqa", "mmlu_anatomy", "usmle"), ("en",), FIX / "mcq_hub", None
    )
    by = {}
    for q in questions:
        by.setdefault(q.dataset, []).append(q.record)
    assert set(by) == {"medqa", "medmcqa", "pubmedqa", "mmlu_anatomy", "usmle"}
    assert all(len(r.options) == 4 for d in ("medqa", "medmcqa", "mmlu_anatomy") for r in by[d])
    assert all(r.options == ("yes", "no", "maybe") and r.context for r in by["pubmedqa"])
    assert all(0 <= r.gold < len(r.options) and r.question for rs in by.values() for r in rs)
    assert len({q.id for q in questions}) == len(questions)


def _gold_by_question() -> dict[str, tuple[str, str, str]]:
    """{question text: (language, dataset, gold letter)} of the generic MCQ fixture."""
    out = {}
    for path in (FIX / "mcq").glob("*/*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            gold = rec["answer"] if isinstance(rec["answer"], str) else "ABCD"[rec["answer"]]
            out[rec["question"]] = (path.parent.name, path.stem, gold)
    return out


def _responder(body: dict) -> str:
    """en medqa: right, except medqa-3 wrong; en pubmedqa: one unparsable; ar medqa: Arabic letters;
    ar pubmedqa: nothing parsable (accuracy null)."""
    text = body["messages"][-1]["content"]
    lang, dataset, gold = next(v for q, v in _gold_by_question().items() if q in text)
    if lang == "ar":
        return "لا أعرف" if dataset == "pubmedqa" else "الإجابة: " + {"A": "أ", "B": "ب"}[gold]
    if dataset == "pubmedqa" and "aspirin" in text.lower():
        return "Maybe A or B."
    return "The answer is C." if dataset == "medqa" and gold == "B" else f"Answer: {gold}"


def _check(results: dict, out: Path) -> None:
    entry = results["tasks"]["mcq"]
    assert entry["mcq_mode"] == "generative"
    m = entry["metrics"]
    assert m["en"]["medqa"] == pytest.approx(2 / 3)  # medqa-3 answered wrongly
    assert m["en"]["pubmedqa"] == pytest.approx(1.0)  # over the one parsed reply
    assert m["ar"]["medqa"] == pytest.approx(1.0)  # Arabic letters mapped
    assert m["ar"]["pubmedqa"] is None  # none parsed: null, never 0
    assert m["ar"]["average"] == pytest.approx(1.0)  # over the datasets with parsed replies
    replies = entry["mcq_generative"]["replies"]
    assert replies["en"]["pubmedqa"] == {"n": 2, "parsed": 1, "unparsed": 1}
    assert replies["ar"]["pubmedqa"] == {"n": 2, "parsed": 0, "unparsed": 2}
    assert entry["mcq_generative"]["unparsed"] == 3
    rows = [json.loads(x) for x in (out / "mcq" / "scored.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10 and sum(r["acc"] is None for r in rows) == 3
    report = render_report([out / "results.json"], out / "report")
    text = Path(report["markdown"]).read_text(encoding="utf-8")
    assert "GENERATIVE mode" in text and "not the paper's log-likelihood protocol" in text
    assert "n/a" in text and "unparsed replies (not scored)" in text and "PubMedQA 2 of 2" in text


def test_generative_mcq_through_the_endpoint(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=_responder) as server:
        cfg = RunConfig(
            out_dir=tmp_path, model="x", data={"mcq": str(FIX / "mcq")}, endpoint=server.base_url, endpoint_model="m"
        )
        assert cfg.resolved_mcq_mode() == "generative" and not get_kind("mcq").needs_engine(cfg)
        results = load_results(run_eval(["mcq"], None, cfg))
        bodies = server.bodies(outcome="ok")
    assert len(bodies) == 10
    assert all((b["temperature"], b["max_tokens"]) == (0.0, 32) for b in bodies)
    assert results["tasks"]["mcq"]["generation"]["remote"] is True
    ci = results["tasks"]["mcq"]["ci95"]
    assert ci["en"]["medqa"] is not None and ci["ar"]["pubmedqa"] is None  # no interval where nothing parsed
    _check(results, tmp_path)


class _Scripted:
    """An in-process Generator answering as `_responder` would."""

    def __init__(self) -> None:
        self.asked = 0

    def generate_batch(self, conversations, params, sample_ids=None):  # noqa: ANN001, ANN201
        self.asked += len(conversations)
        out = []
        for conv in conversations:
            text = _responder({"messages": [{"role": "user", "content": conv[-1].content}]})
            out.append(Reply(text, "en", 1, 1, "stop"))
        return out


def test_generative_mcq_in_process_and_resumed(tmp_path: Path) -> None:
    engine = _Scripted()
    cfg = RunConfig(out_dir=tmp_path, model="x", data={"mcq": str(FIX / "mcq")}, mcq_mode="generative")
    assert get_kind("mcq").needs_engine(cfg)
    _check(load_results(run_eval(["mcq"], engine, cfg)), tmp_path)
    again = _Scripted()
    run_eval(["mcq"], again, cfg)
    assert (engine.asked, again.asked) == (10, 0)  # every reply came from the cache


def test_mode_selection() -> None:
    base = {"out_dir": Path("o"), "model": "m"}
    assert RunConfig(**base).resolved_mcq_mode() == "loglikelihood"
    assert RunConfig(**base, endpoint="http://h/v1", endpoint_model="n").resolved_mcq_mode() == "generative"
    with_logprobs = RunConfig(**base, endpoint="http://h/v1", endpoint_model="n", mcq_endpoint="http://h/v1")
    assert with_logprobs.resolved_mcq_mode() == "loglikelihood" and not get_kind("mcq").needs_engine(with_logprobs)
    forced = RunConfig(**base, endpoint="http://h/v1", endpoint_model="n", mcq_mode="loglikelihood")
    assert get_kind("mcq").needs_engine(forced)  # lm-eval on the model loaded here
