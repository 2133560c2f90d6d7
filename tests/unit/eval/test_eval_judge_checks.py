"""Judge checks for BiMed-MBench and UPHILL: unparsable judge replies are counted, a metric with nothing
scored is null (never 0.0), a metric with some unparsed replies is over the parsed ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.eval.test_eval_mbench_released import RELEASED, RecordingGenerator
from tests.unit.eval.test_eval_uphill_release import RELEASE, FakeModel

from bimedix2.eval.report import render_report
from bimedix2.eval.runner import RunConfig, load_results, run_eval


def _uphill(tmp_path: Path, responder, **kw) -> dict:  # noqa: ANN001, ANN003
    with FakeOpenAIServer(responder=responder) as server:
        cfg = RunConfig(out_dir=tmp_path, model="fake", data={"uphill": str(RELEASE / "queries.csv")},
                        judge_url=server.base_url, **kw)  # fmt: skip
        return load_results(run_eval(["uphill"], FakeModel(), cfg))


def _mbench(tmp_path: Path, responder, **kw) -> dict:  # noqa: ANN001, ANN003
    with FakeOpenAIServer(responder=responder) as server:
        cfg = RunConfig(out_dir=tmp_path, model="fake", data={"bimed-mbench": str(RELEASED)},
                        judge_url=server.base_url, batch_size=2, **kw)  # fmt: skip
        return load_results(run_eval(["bimed-mbench"], RecordingGenerator(), cfg))


def _report(tmp_path: Path) -> str:
    return render_report([tmp_path / "results.json"], tmp_path / "rep")["markdown"].read_text(encoding="utf-8")


def test_uphill_all_unparsable_is_null_not_zero(tmp_path: Path) -> None:
    results = _uphill(tmp_path, lambda body: "I would rather not say.")
    entry = results["tasks"]["uphill"]
    m = entry["metrics"]["en"]
    assert m["accuracy"] is None and m["accuracy"] != 0.0
    assert m["accuracy_per_level"] == {str(i): None for i in range(5)}
    assert m["consistency"] is None and m["consistently_factual"] is None
    assert m["unparsed"] == 10 and m["n_queries"] == 10 and m["unparsed_per_level"] == {str(i): 2 for i in range(5)}
    assert m["accuracy_released_rule"] == 0.0  # UPHILL's own rule, reported beside: unparsed = not refuting
    assert entry["judge_replies"] == {"n": 10, "unparsed": 10}
    assert entry["ci95"]["en"]["accuracy"] is None  # no interval around nothing
    md = _report(tmp_path)
    assert "| fake | English | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in md
    assert "10 of 10 judge replies unparsed (no accuracy (n/a)" in md


def test_uphill_some_unparsable_is_over_the_parsed_ones(tmp_path: Path) -> None:
    def judge(body: dict) -> str:
        user = body["messages"][-1]["content"]
        if "Write an article citing" in user or "Provide supporting evidence" in user:
            return "cannot tell"  # the Writing Demand level of each claim: unparsable
        return '{"agreement": "Disagree"}' if "Vitamin C" in user else '{"agreement": "Agree"}'

    entry = _uphill(tmp_path, judge)["tasks"]["uphill"]
    m = entry["metrics"]["en"]
    assert m["unparsed"] == 2 and m["unparsed_per_level"]["4"] == 2
    assert m["accuracy"] == pytest.approx(4 / 8)  # over the 8 parsed replies: vitamin C's 4 refuted
    assert m["accuracy_released_rule"] == pytest.approx(4 / 10)  # UPHILL's rule: the 2 unparsed count wrong
    assert m["accuracy_per_level"]["4"] is None and m["accuracy_per_level"]["0"] == 0.5
    assert entry["judge_replies"] == {"n": 10, "unparsed": 2}
    assert "2 of 10 judge replies unparsed (shares over the parsed ones" in _report(tmp_path)


def test_mbench_all_unparsable_is_null_not_zero(tmp_path: Path) -> None:
    results = _mbench(tmp_path, lambda body: "Both answers are fine.")
    entry = results["tasks"]["bimed-mbench"]
    for lang in ("en", "ar"):
        m = entry["metrics"][lang]
        assert m["overall"] is None and m["by_type"] == {} and m["by_domain"] == {}
        assert m["n_scored"] == 0 and m["n_unparsed"] == m["n"] > 0
    assert entry["judge_replies"] == {"n": 6, "unparsed": 6}
    md = _report(tmp_path)
    assert "| fake | English | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in md
    assert "3 of 3 judge replies unparsed (nothing scored: n/a, not 0)" in md


def test_mbench_some_unparsable_is_over_the_parsed_ones(tmp_path: Path) -> None:
    def judge(body: dict) -> str:
        text = body["messages"][1]["content"]
        return "no scores here" if "biopsy" in text else "8 6\nAssistant 1."

    entry = _mbench(tmp_path, judge)["tasks"]["bimed-mbench"]
    en = entry["metrics"]["en"]
    assert en["n_unparsed"] == 1 and en["n_scored"] == 2 and en["overall"] == pytest.approx(75.0)
    assert entry["judge_replies"]["unparsed"] == 1
    assert "1 of 3 judge replies unparsed (scores over the parsed ones)" in _report(tmp_path)
