"""`eval conversations`: the script, the strict verdict parser, the position-swap rule, win/tie/loss with
intervals per language, anonymity towards the judge, the LLM patient, resuming, and the rating sheet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.errors import EvalDataError
from bimedix2.eval.conversation_eval import JudgeSpec, Side, evaluate
from bimedix2.eval.conversations import EndpointResponder, EngineResponder, Patient, load_script
from bimedix2.eval.pairwise import combine, parse_verdict, position_bias, to_model
from bimedix2.eval.rater.sheet import read_key, read_sheet
from bimedix2.types import GenParams

SCRIPT = Path(__file__).resolve().parents[2] / "fixtures" / "conversations" / "script.jsonl"
PARAMS = GenParams(max_new_tokens=16, temperature=0.0)
CONFIG = {"script_sha256": "x", "a": "A", "b": "B", "patient": "script", "judge": "j", "params": {}}


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Assistant 1\nbecause...", "1"),
        ("  **Assistant 2**\n", "2"),
        ("[[Assistant 1]]", "1"),
        ("tie.", "tie"),
        ("\n\nTIE\nboth fine", "tie"),
        ("Assistant 1 is better", None),
        ("1", None),
        ("Both are good\nAssistant 1", None),
        ("", None),
    ],
)
def test_parse_verdict_reads_only_a_verdict_line(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_swap_rule_counts_a_verdict_only_when_both_orders_name_the_same_model() -> None:
    # A first: "1" is A; B first: "1" is B
    assert to_model("1", a_first=True) == "a" and to_model("1", a_first=False) == "b"
    assert combine(to_model("1", True), to_model("2", False)) == ("win", True)
    assert combine(to_model("2", True), to_model("1", False)) == ("loss", True)
    assert combine(to_model("1", True), to_model("1", False)) == ("tie", False)  # followed the position
    assert combine("tie", "tie") == ("tie", True)
    assert combine(None, "a") == (None, None)
    bias = position_bias(
        [
            {"verdict_ab": "1", "verdict_ba": "1", "consistent": False},
            {"verdict_ab": "1", "verdict_ba": "2", "consistent": True},
            {"verdict_ab": "tie", "verdict_ba": None, "consistent": None},
        ]
    )
    assert bias["first_position_rate"] == pytest.approx(3 / 4)
    assert bias["consistency"] == 0.5 and bias["inconsistent"] == 1 and bias["n_pairs_both_orders"] == 2


def test_script_fixture_and_bad_lines(tmp_path: Path) -> None:
    items = load_script(SCRIPT)
    assert [i.language for i in items] == ["en", "en", "ar", "ar"]
    assert items[2].follow_ups[0].startswith("الصداع")
    bad = {
        '{"id": "x", "language": "fr", "opening": "hi"}': "language",
        '{"id": "x", "language": "en", "opening": ""}': "opening",
        '{"id": "x", "language": "en", "opening": "a", "follow_ups": "b"}': "follow_ups",
        '{"id": "x", "language": "en", "opening": "a", "turns": []}': "unknown field",
    }
    for line, word in bad.items():
        path = tmp_path / "s.jsonl"
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(EvalDataError, match=word):
            load_script(path)
    path.write_text('{"id": "x", "language": "en", "opening": "a"}\n' * 2, encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"s.jsonl:2: id 'x' is repeated"):
        load_script(path)


def _model(tag: str):  # noqa: ANN202
    """A fake model: replies name itself and the turn; model A writes 'GOOD' in English conversations."""

    def reply(body: dict) -> str:
        text = json.dumps(body["messages"], ensure_ascii=False)
        turn = sum(m["role"] == "user" for m in body["messages"])
        english = not re.search("[\u0600-\u06ff]", text)
        quality = "GOOD" if tag == "A" and english else "weak"
        return f"{quality} reply {turn} from the {tag.lower()} side"

    return reply


def _judge(body: dict) -> str:
    """GOOD wins when present; an Arabic headache pair is judged by position; the diabetes pair is unreadable."""
    text = body["messages"][1]["content"]
    first, second = text.split("[End of conversation with Assistant 1]")
    if "السكر" in text:
        return "I cannot decide between them."
    if "صداع" in text:
        return "Assistant 1\nthe first one"
    if "GOOD" in first:
        return "Assistant 1\n..."
    return "Assistant 2\n..." if "GOOD" in second else "Tie"


def _sides(a: FakeOpenAIServer, b: FakeOpenAIServer, out: Path) -> dict[str, Side]:
    return {
        "a": Side("model-alpha", EndpointResponder(a.base_url, "alpha", PARAMS, out / "a.sqlite")),
        "b": Side("model-beta", EndpointResponder(b.base_url, "beta", PARAMS, out / "b.sqlite")),
    }


def test_endpoints_judged_both_orders_win_tie_loss_per_language_and_resume(tmp_path: Path) -> None:
    items = load_script(SCRIPT)
    out = tmp_path / "out"
    with (
        FakeOpenAIServer(responder=_model("A")) as a,
        FakeOpenAIServer(responder=_model("B")) as b,
        FakeOpenAIServer(responder=_judge) as judge,
    ):
        spec = JudgeSpec(judge.base_url, "judge-m")
        results = evaluate(items, _sides(a, b, out), Patient(), spec, PARAMS, out, CONFIG, n_resamples=200)
        # each model heard the scripted patient: 3 + 2 + 3 + 2 replies
        assert len(a.requests) == len(b.requests) == 10
        longest = max(len(r.body["messages"]) for r in a.requests)
        assert longest == 5  # patient, model, patient, model, patient
        assert len(judge.requests) == 2 * len(items)  # both orders
        bodies = json.dumps([r.body for r in judge.requests], ensure_ascii=False)
        assert "model-alpha" not in bodies and "model-beta" not in bodies and "alpha" not in bodies
        wtl = results["win_tie_loss"]
        assert (wtl["overall"]["win"], wtl["overall"]["tie"], wtl["overall"]["loss"]) == pytest.approx(
            (2 / 3, 1 / 3, 0)
        )
        assert wtl["en"]["win"] == 1.0 and wtl["en"]["n"] == 2
        assert wtl["ar"]["tie"] == 1.0 and wtl["ar"]["n"] == 1
        lo, hi = wtl["overall"]["ci95"]["win"]
        assert 0 <= lo <= 2 / 3 <= hi <= 1
        assert results["n_unparsed"] == {"overall": 1, "ar": 1, "en": 0}
        bias = results["position_bias"]["overall"]
        assert bias["inconsistent"] == 1 and bias["n_pairs_both_orders"] == 3
        assert bias["first_position_rate"] == pytest.approx(4 / 6)
        assert json.loads((out / "results.json").read_text())["a"] == "model-alpha"
        report = (out / "report.md").read_text(encoding="utf-8")
        assert "| en | 2 | 100.0 [100.0, 100.0] | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] | 0 |" in report
        assert "| ar | 1 |" in report and "| overall | 66.7% of 6 | 2 of 3 |" in report
        seen = (len(a.requests), len(b.requests), len(judge.requests))
        again = evaluate(items, _sides(a, b, out), Patient(), spec, PARAMS, out, CONFIG, n_resamples=200)
        assert (len(a.requests), len(b.requests), len(judge.requests)) == seen  # nothing asked twice
        assert again["win_tie_loss"]["overall"] == results["win_tie_loss"]["overall"]
    sheet, key = read_sheet(out), read_key(out)
    assert len(sheet) == 4 and set(key) == {p["pair"] for p in sheet}
    assert "model-alpha" not in (out / "rating" / "sheet.jsonl").read_text()
    for pair in sheet:  # the key maps each shown conversation back to its model
        shown_a = pair["A"][1]["content"]
        assert (key[pair["pair"]]["A"] == "a") == (" a side" in shown_a)


def test_changed_settings_or_script_line_are_refused(tmp_path: Path) -> None:
    items = load_script(SCRIPT)[:1]
    out = tmp_path / "out"
    with (
        FakeOpenAIServer(responder=_model("A")) as a,
        FakeOpenAIServer(responder=_model("B")) as b,
        FakeOpenAIServer(responder=_judge) as judge,
    ):
        spec = JudgeSpec(judge.base_url, "judge-m")
        evaluate(items, _sides(a, b, out), Patient(), spec, PARAMS, out, CONFIG, n_resamples=0)
        with pytest.raises(EvalDataError, match="judge changed"):
            evaluate(items, _sides(a, b, out), Patient(), spec, PARAMS, out, {**CONFIG, "judge": "k"}, n_resamples=0)
        changed = [type(items[0])(items[0].id, "en", "another opening", items[0].follow_ups)]
        with pytest.raises(EvalDataError, match="another script line"):
            evaluate(changed, _sides(a, b, out), Patient(), spec, PARAMS, out, CONFIG, n_resamples=0)


def test_llm_patient_answers_each_model_in_the_conversations_language(tmp_path: Path) -> None:
    items = [i for i in load_script(SCRIPT) if i.id in ("chest-pain-en", "headache-ar")]
    out = tmp_path / "out"
    with (
        FakeOpenAIServer(responder=_model("A")) as a,
        FakeOpenAIServer(responder=_model("B")) as b,
        FakeOpenAIServer(responder=lambda body: f"patient turn {len(body['messages'])}") as patient_server,
        FakeOpenAIServer(responder=_judge) as judge,
    ):
        patient = Patient(EndpointResponder(patient_server.base_url, "pat", PARAMS, out / "p.sqlite"), follow_ups=1)
        evaluate(items, _sides(a, b, out), patient, JudgeSpec(judge.base_url, "j"), PARAMS, out, CONFIG, n_resamples=0)
        assert len(patient_server.requests) == 2 * len(items)  # one follow-up per conversation, per model
        systems = [r.body["messages"][0]["content"] for r in patient_server.requests]
        assert any("أنت تؤدي دور مريض" in s for s in systems) and any("role-playing a patient" in s for s in systems)
        first = patient_server.requests[0].body["messages"]
        assert [m["role"] for m in first] == ["system", "user"]  # the conversation as one transcript
        transcript = next(r.body["messages"][1]["content"] for r in patient_server.requests if "صداع" in str(r.body))
        assert (
            transcript.startswith("المحادثة حتى الآن:\nالمريض: أعاني من صداع") and "المساعد: weak reply 1" in transcript
        )
    stored = [json.loads(line) for line in (out / "conversations" / "a.jsonl").read_text().splitlines()[1:]]
    turns = stored[0]["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2]["content"].startswith("patient turn")


def test_in_process_model_against_an_endpoint(tmp_path: Path, tiny_engine) -> None:  # noqa: ANN001
    items = load_script(SCRIPT)[2:3]  # Arabic
    out = tmp_path / "out"
    loads = []
    local = EngineResponder(
        lambda: loads.append(1) or tiny_engine, GenParams(max_new_tokens=4, temperature=0.0), "tiny"
    )
    with FakeOpenAIServer(responder=_model("B")) as b, FakeOpenAIServer(responder=lambda body: "Tie") as judge:
        sides = {"a": Side("tiny", local), "b": Side("beta", EndpointResponder(b.base_url, "beta", PARAMS, out / "b"))}
        results = evaluate(items, sides, Patient(), JudgeSpec(judge.base_url, "j"), PARAMS, out, CONFIG, n_resamples=0)
        assert results["win_tie_loss"]["ar"]["tie"] == 1.0
        evaluate(items, sides, Patient(), JudgeSpec(judge.base_url, "j"), PARAMS, out, CONFIG, n_resamples=0)
    assert loads == [1]  # loaded once; not again when every conversation is stored


def test_cli_in_process_against_endpoint_then_agreement(
    tmp_path: Path, tiny_llava_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bimedix2.cli import main
    from bimedix2.eval.rater.ratings import RatingStore

    out = tmp_path / "out"
    with FakeOpenAIServer(responder=_model("B")) as b, FakeOpenAIServer(responder=_judge) as judge:
        argv = [
            "eval",
            "conversations",
            "--script",
            str(SCRIPT),
            "--model-a",
            str(tiny_llava_path),
            "--label-a",
            "tiny",
        ]
        argv += ["--endpoint-b", b.base_url, "--endpoint-model-b", "beta", "--judge", judge.base_url]
        argv += ["--judge-model", "j", "--out", str(out), "--max-new-tokens", "4", "--bootstrap", "100"]
        assert main(argv) == 0
        captured = capsys.readouterr()
        assert "tiny (A) vs beta (B)" in captured.out and "position bias" in captured.out
        assert "conversations" in captured.err  # progress on stderr
        config = json.loads((out / "config.json").read_text())
        assert config["a"]["in_process"] == str(tiny_llava_path) and config["b"]["model"] == "beta"
        assert config["judge"]["model"] == "j" and len(config["script_sha256"]) == 64
        bad = ["eval", "conversations", "--script", str(SCRIPT), "--judge", judge.base_url, "--judge-model", "j"]
        assert main([*bad, "--endpoint-b", b.base_url, "--endpoint-model-b", "beta", "--out", str(out)]) != 0
        assert "give exactly one of --model-a PATH or --endpoint-a URL" in capsys.readouterr().err
    pairs = {p["pair"] for p in read_sheet(out)}
    for rater in ("dr-a", "dr-b"):
        store = RatingStore(out, rater, pairs)
        for pair in sorted(pairs):
            store.rate(pair, "B")
    assert main(["eval", "agreement", str(out), "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert "cohen_kappa" in text and "LLM judge vs dr-a" in text
    agreement = json.loads((out / "agreement.json").read_text())
    assert agreement["win_tie_loss"]["overall"]["n"] == 8 and agreement["a"] == "tiny"


def test_a_failing_judge_keeps_the_conversations_and_a_rerun_asks_only_the_judge(tmp_path: Path) -> None:
    from bimedix2.errors import LLMError

    items = load_script(SCRIPT)
    out = tmp_path / "out"
    with (
        FakeOpenAIServer(responder=_model("A")) as a,
        FakeOpenAIServer(responder=_model("B")) as b,
        FakeOpenAIServer(responder=_judge) as judge,
    ):
        judge.fault_when(lambda body: "صداع" in str(body), "400", times=2)
        spec = JudgeSpec(judge.base_url, "judge-m")
        with pytest.raises(LLMError):
            evaluate(items, _sides(a, b, out), Patient(), spec, PARAMS, out, CONFIG, n_resamples=0)
        asked = (len(a.requests), len(b.requests))
        results = evaluate(items, _sides(a, b, out), Patient(), spec, PARAMS, out, CONFIG, n_resamples=0)
        assert (len(a.requests), len(b.requests)) == asked  # the conversations were kept
        assert results["n_pairs"] == 4 and results["win_tie_loss"]["overall"]["n"] == 3
