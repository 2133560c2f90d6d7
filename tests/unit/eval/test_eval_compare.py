"""`bimedix2 eval compare`: B - A on shared samples with a paired-bootstrap CI and sign-flip p-value;
refusals when the runs cannot be paired."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.eval.test_eval_bootstrap import Varied
from tests.unit.eval.test_eval_uphill_release import RELEASE, FakeModel

from bimedix2.cli import main
from bimedix2.errors import EvalDataError
from bimedix2.eval.compare import compare_runs
from bimedix2.eval.runner import RunConfig, run_eval

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"


def _uphill(out: Path, responder, **kw) -> Path:  # noqa: ANN001, ANN003
    with FakeOpenAIServer(responder=responder) as server:
        cfg = RunConfig(out_dir=out, model="fake", data={"uphill": str(RELEASE / "queries.csv")},
                        judge_url=server.base_url, **kw)  # fmt: skip
        return run_eval(["uphill"], FakeModel(), cfg)


def _always_disagree(body: dict) -> str:
    return '{"agreement": "Disagree"}'


def _covid_agreed(body: dict) -> str:
    covid = "[text]: Vegetarians" in body["messages"][-1]["content"]
    return '{"agreement": "Agree"}' if covid else _always_disagree(body)


def _leaves(node: dict, prefix: tuple = ()) -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and "diff" in value:
            out[(*prefix, key)] = value
        elif isinstance(value, dict):
            out.update(_leaves(value, (*prefix, key)))
    return out


def test_a_run_against_itself_differs_by_zero_with_p_one(tmp_path: Path) -> None:
    data = {"vqa-rad": str(FIX / "vqa-rad"), "mimic-iii-summarization": str(FIX / "mimic-iii")}
    run_eval(list(data), Varied(), RunConfig(out_dir=tmp_path / "a", model="fake", data=data))
    result = compare_runs(tmp_path / "a", tmp_path / "a" / "results.json", n_resamples=200)
    assert set(result["tasks"]) == set(data)
    leaves = {(t, *p): v for t, info in result["tasks"].items() for p, v in _leaves(info["metrics"]).items()}
    assert len(leaves) >= 12
    for path, m in leaves.items():
        assert m["diff"] == 0.0 and m["p"] == 1.0 and m["ci95"] == [0.0, 0.0], path
    assert result["tasks"]["vqa-rad"]["n_shared"] == 3


def test_paired_difference_interval_and_p_on_a_known_distribution(tmp_path: Path) -> None:
    """A refutes both false claims at every level, B agrees with one: per-claim differences are 0 and -1,
    so a resampled mean difference is 0, -0.5 or -1 with chances 1/4, 1/2, 1/4, and p = 2 x 1/4."""
    a = _uphill(tmp_path / "a", _always_disagree)
    b = _uphill(tmp_path / "b", _covid_agreed)
    result = compare_runs(a, b, n_resamples=8000, seed=1)
    up = result["tasks"]["uphill"]
    assert up["n_shared"] == 10 and up["unit"] == "claim"
    acc = up["metrics"]["en"]["accuracy"]
    assert (acc["a"], acc["b"], acc["diff"]) == (1.0, 0.5, -0.5)
    assert acc["ci95"] == [-1.0, 0.0]
    assert acc["p"] == pytest.approx(0.5, abs=0.04)
    assert up["metrics"]["en"]["consistency"]["diff"] == 0.0  # both claims consistent in both runs
    assert result["method"]["n_resamples"] == 8000 and result["method"]["p_resolution"] == pytest.approx(2 / 8000)


def test_refusals_name_what_differs(tmp_path: Path) -> None:
    a = _uphill(tmp_path / "a", _always_disagree)
    toolkit = _uphill(tmp_path / "tk", _always_disagree, protocol="toolkit", judge_model="j")
    with pytest.raises(EvalDataError, match=r"run A ran under protocol 'paper', run B under 'toolkit'"):
        compare_runs(a, toolkit)
    judged = _uphill(tmp_path / "judged", _always_disagree, judge_model="another-judge")
    with pytest.raises(EvalDataError, match=r"run A was judged by 'gpt-3.5-turbo', run B by 'another-judge'"):
        compare_runs(a, judged)
    # same protocol, other task options
    other = tmp_path / "opts"
    shutil.copytree(tmp_path / "a", other)
    results = json.loads((other / "results.json").read_text(encoding="utf-8"))
    results["config"]["uphill"]["task"]["paper_veracities"] = ["false", "fabricated"]
    (other / "results.json").write_text(json.dumps(results), encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"different task options \(paper_veracities\)"):
        compare_runs(a, other)
    # no shared sample ids
    renamed = tmp_path / "renamed"
    shutil.copytree(tmp_path / "a", renamed)
    scored = renamed / "uphill" / "scored.jsonl"
    rows = [json.loads(line) for line in scored.read_text(encoding="utf-8").splitlines()]
    scored.write_text("".join(json.dumps({**r, "id": "x" + r["id"]}) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"share no sample ids \(A scored 10, B 10\)"):
        compare_runs(a, renamed)
    # same ids, other samples
    scored.write_text("".join(json.dumps({**r, "query": "other"}) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(EvalDataError, match=r"has a different query in the two runs"):
        compare_runs(a, renamed)
    with pytest.raises(EvalDataError, match=r"not in both runs; shared: uphill"):
        compare_runs(a, a, tasks=["vqa-rad"])
    with pytest.raises(EvalDataError, match="no results file"):
        compare_runs(tmp_path / "missing", a)


def test_cli_compare_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _uphill(tmp_path / "a", _always_disagree)
    b = _uphill(tmp_path / "b", _covid_agreed)
    out = tmp_path / "cmp.json"
    assert main(["eval", "compare", str(a.parent), str(b), "--bootstrap", "500", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "paired bootstrap, 500 resamples, seed 0" in text and "en.accuracy " in text and "-0.5000" in text
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["tasks"]["uphill"]["metrics"]["en"]["accuracy"]["diff"] == -0.5
    assert main(["eval", "compare", str(a), str(tmp_path / "nowhere")]) == 2
    assert "no results file" in capsys.readouterr().err


def test_a_one_sample_group_is_flagged_as_having_no_spread(tmp_path: Path) -> None:
    from tests.unit.eval.test_eval_judge_swap import _mbench

    from bimedix2.eval.compare import format_comparison

    _mbench(tmp_path / "a", lambda body: "8 6\nx", swap=False)
    better = lambda body: "8 7\nx" if "biopsy" in body["messages"][1]["content"] else "8 6\nx"  # noqa: E731
    _mbench(tmp_path / "b", better, swap=False)
    result = compare_runs(tmp_path / "a", tmp_path / "b", n_resamples=500)
    en = result["tasks"]["bimed-mbench"]["metrics"]["en"]
    histology = en["by_domain"]["Histology"]  # the biopsy question is the only histology sample
    assert histology["diff"] == pytest.approx(12.5) and histology["no_spread"] is True
    assert histology["ci95"] == [pytest.approx(12.5), pytest.approx(12.5)]
    assert en["overall"]["no_spread"] is False and en["overall"]["ci95"][0] < en["overall"]["ci95"][1]
    assert en["by_domain"]["CXR"]["diff"] == 0.0 and en["by_domain"]["CXR"]["no_spread"] is False
    text = format_comparison(result)
    assert "en.by_domain.Histology" in text and "* every resample gave the same difference" in text
