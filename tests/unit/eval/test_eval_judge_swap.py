"""`--judge-swap`: the judge asked a second time with the two positions exchanged; position bias and the
swap-averaged score. Without it nothing extra is sent (the released-request tests pin those bodies)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.eval.test_eval_bootstrap import _check_entry
from tests.unit.eval.test_eval_mbench_released import (
    AR_FILE,
    EN_FILE,
    RELEASED,
    RecordingGenerator,
    _answer,
    _records,
    released_body,
)
from tests.unit.eval.test_eval_uphill_release import RELEASE, FakeModel

from bimedix2.cli import build_parser
from bimedix2.commands.eval import run_options
from bimedix2.eval.kinds.uphill import ENTAILMENT_SYSTEM
from bimedix2.eval.report import render_report
from bimedix2.eval.runner import RunConfig, load_results, run_eval


def _mbench(tmp_path: Path, responder, swap: bool) -> tuple[dict, list[dict], RecordingGenerator]:  # noqa: ANN001
    gen = RecordingGenerator()
    with FakeOpenAIServer(responder=responder) as server:
        cfg = RunConfig(out_dir=tmp_path, model="fake", data={"bimed-mbench": str(RELEASED)},
                        judge_url=server.base_url, batch_size=2, judge_swap=swap)  # fmt: skip
        results = load_results(run_eval(["bimed-mbench"], gen, cfg))
        return results, server.bodies(outcome="ok"), gen


def _first_wins(body: dict) -> str:
    return "8 6\nAssistant 1 is better."  # whichever answer is shown first gets 2 points more


def test_mbench_swap_sends_the_released_request_with_the_answers_exchanged(tmp_path: Path) -> None:
    _, plain, _ = _mbench(tmp_path / "plain", _first_wins, swap=False)
    results, bodies, gen = _mbench(tmp_path / "swap", _first_wins, swap=True)
    assert len(plain) == 6 and len(bodies) == 12
    convs = {sid: conv for conv, _, sid in gen.calls}
    key = lambda b: json.dumps(b, sort_keys=True, ensure_ascii=False)  # noqa: E731
    expected = []
    for path, script, lang in ((EN_FILE, "eng", "en"), (AR_FILE, "ara", "ar")):
        for rec in _records(path):
            candidate = _answer(convs[f"{lang}-{rec['question_id']}"])
            expected.append(released_body(rec, candidate, script))  # as released
            expected.append(released_body({**rec, "gpt4_answer": candidate}, rec["gpt4_answer"], script))  # swapped
    assert sorted(map(key, bodies)) == sorted(map(key, expected))
    assert sorted(map(key, plain)) == sorted(key(b) for b in expected[::2])  # no swap: only the released ones
    entry = results["tasks"]["bimed-mbench"]
    en = entry["judge_swap"]["en"]
    # as asked: reference 8, candidate 6 (75%); swapped back: reference 6, candidate 8
    assert entry["metrics"]["en"]["overall"] == pytest.approx(75.0)  # the default numbers are unchanged
    assert en["position_bias"] == pytest.approx(-2.0)  # the first position is favoured by 2 points
    assert en["candidate_second_minus_first"] == pytest.approx(-2.0)
    assert en["swapped_overall"] == pytest.approx(8 / 6 * 100)
    assert en["swap_averaged"]["overall"] == pytest.approx(100.0)  # (6+8)/2 over (8+6)/2
    assert en["n_pairs"] == 3 and en["n_unparsed_swapped"] == 0
    md = render_report([tmp_path / "swap" / "results.json"], tmp_path / "rep")["markdown"].read_text(encoding="utf-8")
    assert "BiMed-MBench judge position-swap check" in md
    # a judge this constant leaves no doubt: every interval is the point itself
    assert (
        "| fake | English | 75.0 [75.0, 75.0] | 133.3 [133.3, 133.3] | 100.0 [100.0, 100.0] | -2.00 [-2.00, -2.00] |"
        in md
    )


def test_mbench_swap_of_an_unbiased_judge_shows_no_bias(tmp_path: Path) -> None:
    def fair(body: dict) -> str:  # scores the answers by content: the reference 9, ours 5, in either order
        user = body["messages"][1]["content"]
        first = user.split("[Assistant 1]\n")[1].split("\n\n[End of Assistant 1]")[0]
        return "5 9" if first.startswith("Answer to:") else "9 5"

    results, _, _ = _mbench(tmp_path, fair, swap=True)
    for lang in ("en", "ar"):
        sw = results["tasks"]["bimed-mbench"]["judge_swap"][lang]
        overall = results["tasks"]["bimed-mbench"]["metrics"][lang]["overall"]
        assert sw["position_bias"] == 0.0 and overall == pytest.approx(500 / 9)
        assert sw["swap_averaged"]["overall"] == pytest.approx(overall) == pytest.approx(sw["swapped_overall"])


def test_uphill_swap_exchanges_claim_and_answer(tmp_path: Path) -> None:
    def order_sensitive(body: dict) -> str:  # refutes whenever the claim is the [text]; agrees otherwise
        user = body["messages"][-1]["content"]
        as_asked = "[text]: Vitamin C" in user or "[text]: Vegetarians" in user
        return '{"agreement": "Disagree"}' if as_asked else '{"agreement": "Agree"}'

    with FakeOpenAIServer(responder=order_sensitive) as server:
        cfg = RunConfig(out_dir=tmp_path, model="fake", data={"uphill": str(RELEASE / "queries.csv")},
                        judge_url=server.base_url, judge_swap=True)  # fmt: skip
        results = load_results(run_eval(["uphill"], FakeModel(), cfg))
        bodies = server.bodies(outcome="ok")
    assert len(bodies) == 20 and all(b["messages"][0]["content"] == ENTAILMENT_SYSTEM for b in bodies)
    swapped = [b["messages"][1]["content"] for b in bodies if "[text]: answer to: " in b["messages"][1]["content"]]
    assert len(swapped) == 10 and all("[evidences]: Vitamin C" in s or "[evidences]: Vegetarians" in s for s in swapped)
    entry = results["tasks"]["uphill"]
    assert entry["metrics"]["en"]["accuracy"] == 1.0  # the default numbers are the order as asked
    sw = entry["judge_swap"]["en"]
    assert sw["accuracy_swapped"] == 0.0 and sw["position_bias"] == 1.0 and sw["swap_averaged_accuracy"] == 0.5
    assert sw["order_agreement"] == 0.0 and sw["n_pairs"] == 10
    md = render_report([tmp_path / "results.json"], tmp_path / "rep")["markdown"].read_text(encoding="utf-8")
    assert (
        "| fake | English | 100.0 [100.0, 100.0] | 0.0 [0.0, 0.0] | 50.0 [50.0, 50.0] | +100.0 [+100.0, +100.0] |" in md
    )


def test_judge_swap_flag(tmp_path: Path) -> None:
    args = build_parser().parse_args(["eval", "run", "uphill", "--out", str(tmp_path), "--judge-swap"])
    assert run_options(args).run_config().judge_swap is True
    args = build_parser().parse_args(["eval", "run", "uphill", "--out", str(tmp_path)])
    assert run_options(args).run_config().judge_swap is False


def test_swap_intervals_match_the_swap_numbers(tmp_path: Path) -> None:
    def moody(body: dict) -> str:  # position-biased on some samples only, so the bias has a spread
        user = body["messages"][1]["content"]
        first = user.split("[Assistant 1]\n")[1].split("\n\n[End of Assistant 1]")[0]
        if "biopsy" in user or "X-ray" in user:
            return "9 5"  # the first answer wins, whichever it is
        return "5 9" if first.startswith("Answer to:") else "9 5"  # fair: the reference wins

    results, _, _ = _mbench(tmp_path, moody, swap=True)
    assert _check_entry(tmp_path, "bimed-mbench", results) >= 10  # includes the judge_swap paths
    sw = results["tasks"]["bimed-mbench"]["judge_swap"]["en"]
    lo, hi = sw["ci95"]["position_bias"]
    assert sw["position_bias"] == pytest.approx((-4 - 4 + 0) / 3) and lo < hi  # -4, -4 and 0 resampled
