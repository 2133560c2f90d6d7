"""Bootstrap 95% intervals: the resampling itself (seeded, stratified, clustered; a known bootstrap
distribution), every kind's recomputation matching its own aggregate, results.json and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.eval.test_eval_mbench_released import RELEASED, RecordingGenerator
from tests.unit.eval.test_eval_uphill_release import RELEASE, FakeModel

from bimedix2.cli import build_parser
from bimedix2.commands.eval import run_options
from bimedix2.eval.bootstrap import (
    Resampling,
    bootstrap_ci,
    draw_weights,
    percentile_ci,
    point_estimates,
    weighted_mean,
)
from bimedix2.eval.kinds import get_kind
from bimedix2.eval.kinds.mcq import mcq_metrics
from bimedix2.eval.report import render_report
from bimedix2.eval.results import read_scored
from bimedix2.eval.runner import RunConfig, load_results, run_eval, with_intervals
from bimedix2.types import Reply

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"


def _mean_resampling(values: list[float]) -> Resampling:
    return Resampling([str(i) for i in range(len(values))], lambda w: {("mean",): weighted_mean(w, values)})


# ---- the resampling ------------------------------------------------------------------------------------
def test_weights_are_seeded_stratified_and_clustered() -> None:
    strata = ["en"] * 6 + ["ar"] * 4
    clusters = ["c1", "c1", "c2", "c2", "c3", "c3", "d1", "d2", "d3", "d4"]
    w = draw_weights(10, 500, 7, strata, clusters)
    assert w.shape == (500, 10) and np.array_equal(w, draw_weights(10, 500, 7, strata, clusters))
    assert not np.array_equal(w, draw_weights(10, 500, 8, strata, clusters))
    # each stratum keeps its size: 3 English claims (6 rows) and 4 Arabic ones drawn 3 and 4 times
    assert (w[:, :6].sum(axis=1) == 6).all() and (w[:, 6:].sum(axis=1) == 4).all()
    # a cluster's rows are drawn together
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 2] == w[:, 3]).all() and (w[:, 4] == w[:, 5]).all()
    assert not (w[:, 6] == w[:, 7]).all()


def test_binary_mean_follows_the_binomial_bootstrap_distribution() -> None:
    """The bootstrap mean of n 0/1 values with k ones is Binomial(n, k/n)/n: its percentiles are known."""
    values = [1.0] * 70 + [0.0] * 30
    ci = bootstrap_ci(_mean_resampling(values), n_resamples=20000, seed=3)["ci95"]["mean"]
    expected = stats.binom.ppf([0.025, 0.975], 100, 0.7) / 100  # [0.61, 0.79]
    assert ci == pytest.approx(list(expected), abs=0.011)
    assert ci[0] < 0.7 < ci[1]


def test_two_values_give_the_three_point_distribution() -> None:
    weights = draw_weights(2, 40000, 0)
    means = weighted_mean(weights, [0.0, 1.0])
    shares = [np.mean(means == v) for v in (0.0, 0.5, 1.0)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.01)
    assert percentile_ci(means) == [0.0, 1.0]


def test_undefined_metrics_are_null_and_seeds_reproduce() -> None:
    values = [0.2, None, 0.9, 0.4, None, 0.7]
    res = _mean_resampling(values)  # type: ignore[arg-type]
    assert point_estimates(res)[("mean",)] == pytest.approx(0.55)
    one = bootstrap_ci(res, 200, seed=1)
    assert one == bootstrap_ci(res, 200, seed=1) and one != bootstrap_ci(res, 200, seed=2)
    lo, hi = one["ci95"]["mean"]
    assert 0.2 <= lo < 0.55 < hi <= 0.9
    assert one["bootstrap"] == {
        "method": "percentile",
        "confidence": 0.95,
        "n_resamples": 200,
        "seed": 1,
        "unit": "sample",
        "stratified": False,
    }
    nothing = _mean_resampling([None, None])  # type: ignore[list-item]
    assert bootstrap_ci(nothing, 50)["ci95"] == {"mean": None} and point_estimates(nothing) == {("mean",): None}


# ---- every kind: the recomputation is the aggregate, the interval holds it -------------------------------
def _leaf(metrics: dict, path: tuple[str, ...]):  # noqa: ANN202
    node = metrics
    for key in path:
        node = node[key]
    return node


def _check_entry(out: Path, task: str, results: dict) -> int:
    """Point estimates of the kind's resampling equal results.json's metrics; each CI holds its estimate."""
    entry = results["tasks"][task]
    rows = read_scored(out / entry["predictions"])
    points = point_estimates(get_kind(entry["kind"]).resampling(entry, rows))
    assert points, task
    checked = 0
    for path, value in points.items():
        if path[0] == "judge_swap":  # the position-swap check's numbers and intervals: judge_swap.<lang>
            block = entry["judge_swap"][path[1]]
            stored, ci = _leaf(block, path[2:]), _leaf(block["ci95"], path[2:])
        else:
            stored, ci = _leaf(entry["metrics"], path), _leaf(entry["ci95"], path)
        if value is None:  # a group without samples: no interval
            assert ci is None, (task, path)
            continue
        assert stored == pytest.approx(value), (task, path)
        assert ci[0] - 1e-9 <= value <= ci[1] + 1e-9, (task, path, ci)
        checked += 1
    assert entry["bootstrap"]["n_resamples"] == 1000 and entry["bootstrap"]["seed"] == 0
    return checked


class Varied:
    """A Generator whose answers differ by sample (so intervals have width): echoes every other question."""

    def generate_batch(self, conversations, params=None, sample_ids=None) -> list[Reply]:  # noqa: ANN001
        texts = ["yes" if i % 2 else f"no {c[-1].content[:40]}" for i, c in enumerate(conversations)]
        return [Reply(t, "en", 1, 1, "stop") for t in texts]


def test_vqa_and_text_intervals_match_their_aggregates(tmp_path: Path) -> None:
    data = {
        "vqa-rad": FIX / "vqa-rad",
        "slake": FIX / "slake",
        "mimic-cxr-report": FIX / "mimic-cxr",
        "mimic-iii-summarization": FIX / "mimic-iii",
    }
    cfg = RunConfig(out_dir=tmp_path, model="fake", data={k: str(v) for k, v in data.items()}, batch_size=8)
    results = load_results(run_eval(list(data), Varied(), cfg))
    assert sum(_check_entry(tmp_path, task, results) for task in data) >= 4 * 4
    # VQA's CI sits beside its metrics, mirroring their nesting; counts get none
    ci = results["tasks"]["vqa-rad"]["ci95"]
    assert set(ci) == {"multimedeval", "improved"} and "n" not in ci["multimedeval"]
    assert set(results["tasks"]["mimic-cxr-report"]["ci95"]) == {"bleu1", "bleu4", "rougeL", "meteor"}


def _mbench_judge(body: dict) -> str:
    text = body["messages"][1]["content"]
    return "8 6\nok" if "biopsy" in text or "'Moders Standard Arabic'" in text else "7 7\nok"


def test_mbench_and_uphill_intervals_match_their_aggregates(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=_mbench_judge) as server:
        cfg = RunConfig(out_dir=tmp_path / "mb", model="fake", data={"bimed-mbench": str(RELEASED)},
                        judge_url=server.base_url)  # fmt: skip
        mb = load_results(run_eval(["bimed-mbench"], RecordingGenerator(), cfg))
    assert _check_entry(tmp_path / "mb", "bimed-mbench", mb) >= 10
    assert mb["tasks"]["bimed-mbench"]["bootstrap"]["stratified"] is True

    def judge(body: dict) -> str:
        user = body["messages"][-1]["content"]
        return '{"agreement": "Disagree"}' if "cure" in user or "Neutral" in user else '{"agreement": "Agree"}'

    with FakeOpenAIServer(responder=judge) as server:
        cfg = RunConfig(out_dir=tmp_path / "up", model="fake", data={"uphill": str(RELEASE / "queries.csv")},
                        judge_url=server.base_url)  # fmt: skip
        up = load_results(run_eval(["uphill"], FakeModel(), cfg))
    assert _check_entry(tmp_path / "up", "uphill", up) >= 8
    assert up["tasks"]["uphill"]["bootstrap"]["unit"] == "claim"
    with FakeOpenAIServer(responder=lambda body: "disagree" if "cure" in str(body) else "agree") as server:
        cfg = RunConfig(out_dir=tmp_path / "tk", model="fake", data={"uphill": str(RELEASE / "UPHILL.csv")},
                        judge_url=server.base_url, judge_model="j", protocol="toolkit")  # fmt: skip
        tk = load_results(run_eval(["uphill"], FakeModel(), cfg))
    assert _check_entry(tmp_path / "tk", "uphill", tk) >= 10
    assert set(tk["tasks"]["uphill"]["ci95"]["en"]["accuracy_by_veracity"]) == {"false", "true", "fabricated"}


def test_mcq_intervals_average_fixed_datasets() -> None:
    rng = np.random.default_rng(0)
    rows = [
        {"task": f"t_{d}_{lang}", "dataset": d, "language": lang, "doc_id": i, "acc": float(rng.random() < p)}
        for d, lang, p, n in (("medqa", "en", 0.7, 40), ("pubmedqa", "en", 0.5, 30), ("medqa", "ar", 0.4, 35))
        for i in range(n)
    ]
    res = get_kind("mcq").resampling({}, rows)
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        per.setdefault(r["language"], {}).setdefault(r["dataset"], []).append(r["acc"])  # type: ignore[arg-type]
    expected = mcq_metrics({lang: {d: float(np.mean(v)) for d, v in ds.items()} for lang, ds in per.items()})
    points = point_estimates(res)
    assert points == {(lang, k): pytest.approx(v) for lang, m in expected.items() for k, v in m.items()}
    assert ("bilingual", "medqa") in points and ("bilingual", "pubmedqa") not in points
    # stratified by lm-eval task: every resample keeps each dataset's size
    w = draw_weights(len(rows), 100, 0, res.strata, res.clusters)
    assert (w[:, :40].sum(axis=1) == 40).all() and (w[:, 40:70].sum(axis=1) == 30).all()
    ci = bootstrap_ci(res, 1000, 0)["ci95"]
    assert ci["en"]["average"][0] < expected["en"]["average"] < ci["en"]["average"][1]


# ---- options, results.json, report ---------------------------------------------------------------------
def test_bootstrap_options_and_zero_turns_it_off(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["eval", "run", "vqa-rad", "--out", str(tmp_path), "--bootstrap", "250", "--bootstrap-seed", "9"]
    )
    cfg = run_options(args).run_config()
    assert (cfg.bootstrap, cfg.bootstrap_seed, cfg.judge_swap) == (250, 9, False)
    default = run_options(build_parser().parse_args(["eval", "run", "vqa-rad", "--out", str(tmp_path)]))
    assert default.run_config().bootstrap == 1000
    with pytest.raises(Exception, match="--bootstrap must be 0"):
        run_options(build_parser().parse_args(["eval", "run", "vqa-rad", "--out", str(tmp_path), "--bootstrap", "-1"]))
    off = RunConfig(out_dir=tmp_path / "off", model="fake", data={"vqa-rad": str(FIX / "vqa-rad")}, bootstrap=0)
    entry = load_results(run_eval(["vqa-rad"], Varied(), off))["tasks"]["vqa-rad"]
    assert "ci95" not in entry and "bootstrap" not in entry and entry["metrics"]["multimedeval"]["n"] == 3.0
    seeded = RunConfig(out_dir=tmp_path / "s", model="fake", data={"vqa-rad": str(FIX / "vqa-rad")}, bootstrap=300,
                       bootstrap_seed=5)  # fmt: skip
    entry = load_results(run_eval(["vqa-rad"], Varied(), seeded))["tasks"]["vqa-rad"]
    assert entry["bootstrap"]["n_resamples"] == 300 and entry["bootstrap"]["seed"] == 5


def test_report_cells_carry_their_intervals(tmp_path: Path) -> None:
    entry = {
        "kind": "uphill",
        "protocol": "paper",
        "metrics": {
            "en": {"accuracy_per_level": {str(i): 0.5 for i in range(5)}, "accuracy": 0.71, "consistency": 0.8}
        },
        "ci95": {"en": {"accuracy": [0.66, 0.76], "accuracy_per_level": {"0": [0.4, 0.6]}}},
        "bootstrap": {"method": "percentile", "n_resamples": 1000, "seed": 0},
    }
    mb = {
        "kind": "mbench",
        "metrics": {"en": {"overall": 80.0, "by_type": {"Conversation": 82.0}, "n": 4, "n_scored": 4}},
        "ci95": {"en": {"overall": [70.5, 88.25], "by_type": {"Conversation": [75.0, 90.0]}}},
    }
    results = {"format": "bimedix2-eval-results/1", "model": "m", "label": "m", "tasks": {"uphill": entry, "b": mb}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    md = render_report([path], tmp_path / "rep")["markdown"].read_text(encoding="utf-8")
    assert "| m | English | 50.0 [40.0, 60.0] | 50.0 | 50.0 | 50.0 | 50.0 | 71.0 [66.0, 76.0] | 80.0 |" in md
    assert "| m | English | 82.0 [75.0, 90.0] | - |" in md and "80.0 [70.5, 88.2] |" in md
    assert "95% percentile-bootstrap interval over samples (1000 resamples, seed 0)" in md
    path.write_text(json.dumps({**results, "tasks": {"b": {**mb, "ci95": {}}}}), encoding="utf-8")
    plain = render_report([path], tmp_path / "rep2")["markdown"].read_text(encoding="utf-8")
    assert "percentile-bootstrap" not in plain and "| m | English | 82.0 | - |" in plain


def test_repeated_ids_skip_the_intervals_and_say_why(tmp_path: Path) -> None:
    scored = tmp_path / "scored.jsonl"
    rows = [{"id": "a", "bleu1": 0.1, "bleu4": 0.0, "rougeL": 0.2, "meteor": 0.3}] * 2
    scored.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    entry = {"kind": "report", "metrics": {"bleu1": 0.1}}
    with pytest.warns(UserWarning, match="no bootstrap intervals"):
        out = with_intervals(entry, scored, 100, 0)
    assert "ci95" not in out and "repeat sample id(s) ['a']" in out["bootstrap"]["skipped"]
    assert with_intervals(entry, scored, 0, 0) == entry  # --bootstrap 0: nothing read, nothing added


def test_mcq_rows_without_acc_are_not_counted() -> None:
    rows = [{"task": "t", "dataset": "medqa", "language": "en", "doc_id": i, "acc": a} for i, a in
            enumerate([1.0, 0.0, None, 1.0])]  # fmt: skip
    assert point_estimates(get_kind("mcq").resampling({}, rows))[("en", "medqa")] == pytest.approx(2 / 3)
