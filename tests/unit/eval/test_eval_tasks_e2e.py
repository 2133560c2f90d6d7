"""Each task end to end on the fixture files with the tiny Llava model, a fake judge endpoint on
127.0.0.1 and, for MCQ, lm-eval on the tiny causal LM; resuming an interrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.errors import ConfigError, EvalDataError
from bimedix2.eval.metrics.vqa import aggregate, score_multimedeval
from bimedix2.eval.runner import RunConfig, load_results, run_eval

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
DATA = {
    "vqa-rad": FIX / "vqa-rad",
    "slake": FIX / "slake",
    "path-vqa": FIX / "path-vqa",
    "mimic-cxr-report": FIX / "mimic-cxr",
    "mimic-iii-summarization": FIX / "mimic-iii",
    "bimed-mbench": FIX / "mbench",
    "uphill": FIX / "uphill" / "claims.jsonl",
    "mcq": FIX / "mcq",
}


def _cfg(out: Path, **kw) -> RunConfig:  # noqa: ANN003
    return RunConfig(
        out_dir=out, model="tiny-llava", data={k: str(v) for k, v in DATA.items()}, batch_size=2, max_new_tokens=6, **kw
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Counting:
    """Wraps the engine: counts generated samples, can fail after N batches (an interrupted run)."""

    def __init__(self, engine, fail_after: int | None = None):  # noqa: ANN001
        self.engine, self.fail_after, self.batches, self.generated = engine, fail_after, 0, []

    def generate_batch(self, conversations, params, sample_ids=None):  # noqa: ANN001, ANN201
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.generated += list(sample_ids)
        return self.engine.generate_batch(conversations, params, sample_ids)


def test_vqa_tasks_end_to_end(tiny_engine, tmp_path: Path) -> None:  # noqa: ANN001
    path = run_eval(["vqa-rad", "slake", "path-vqa"], tiny_engine, _cfg(tmp_path))
    results = load_results(path)
    for task, n in (("vqa-rad", 3), ("slake", 2), ("path-vqa", 2)):
        entry = results["tasks"][task]
        rows = _lines(tmp_path / entry["predictions"])
        assert len(rows) == n == entry["n"]
        # the stored aggregate is what the metric functions give on the stored predictions
        recomputed = aggregate([score_multimedeval(r["prediction"], r["reference"]) for r in rows])
        assert entry["metrics"]["multimedeval"] == pytest.approx(recomputed)
        assert set(entry["metrics"]) == {"multimedeval", "improved"}
        assert results["config"][task]["task"]["name"] == task
    # MultiMedEval's closed rule (gold is yes/no) vs the improved mode's answer_type
    assert results["tasks"]["vqa-rad"]["metrics"]["multimedeval"]["n_closed"] == 1
    assert results["tasks"]["vqa-rad"]["metrics"]["improved"]["n_closed"] == 2
    assert "not for clinical use" in results["notice"]


def test_report_and_summarization_end_to_end(tiny_engine, tmp_path: Path) -> None:  # noqa: ANN001
    wrapped = Counting(tiny_engine)
    results = load_results(run_eval(["mimic-cxr-report", "mimic-iii-summarization"], wrapped, _cfg(tmp_path)))
    for task in ("mimic-cxr-report", "mimic-iii-summarization"):
        metrics = results["tasks"][task]["metrics"]
        assert {"bleu1", "bleu4", "rougeL", "meteor"} <= set(metrics)
        assert metrics["f1_radgraph"] is None and metrics["radcliq"] is None  # never a silent zero
        assert "unavailable" in results["tasks"][task]["unavailable"]["chexbert_similarity"]
    rows = _lines(tmp_path / "mimic-cxr-report" / "scored.jsonl")
    assert rows[0]["n_images"] == 2
    # a scoring model that is not there fails before anything is generated
    never = Counting(tiny_engine, fail_after=0)
    with pytest.raises(EvalDataError, match="RadGraph model not found: /no/such/radgraph"):
        run_eval(
            ["mimic-iii-summarization"], never, _cfg(tmp_path / "b", clinical_models={"radgraph": "/no/such/radgraph"})
        )


def test_interrupted_run_resumes(tiny_engine, tmp_path: Path) -> None:  # noqa: ANN001
    flaky = Counting(tiny_engine, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_eval(["vqa-rad"], flaky, _cfg(tmp_path))
    assert len(flaky.generated) == 2
    cached = _lines(tmp_path / "vqa-rad" / "predictions.jsonl")
    assert len(cached) == 1 + 2  # fingerprint header + the finished batch
    resumed = Counting(tiny_engine)
    run_eval(["vqa-rad"], resumed, _cfg(tmp_path))
    assert resumed.generated == ["vqa-rad-4"]  # only what was missing
    # same settings, same seeds: a fresh run gives the same predictions
    fresh = tmp_path / "fresh"
    run_eval(["vqa-rad"], tiny_engine, _cfg(fresh))
    a = {r["id"]: r["prediction"] for r in _lines(tmp_path / "vqa-rad" / "scored.jsonl")}
    b = {r["id"]: r["prediction"] for r in _lines(fresh / "vqa-rad" / "scored.jsonl")}
    assert a == b
    with pytest.raises(EvalDataError, match="other settings"):
        run_eval(
            ["vqa-rad"],
            tiny_engine,
            RunConfig(out_dir=tmp_path, model="tiny-llava", data={"vqa-rad": str(DATA["vqa-rad"])}, max_new_tokens=9),
        )


def _judge_responder(body: dict) -> str:
    text = body["messages"][-1]["content"]
    if "[Assistant 1]" in text:
        # the released Arabic rubric (spelling as released) asks for Modern Standard Arabic
        return "8 6\nAssistant 1 is more precise." if "'Moders Standard Arabic'" not in text else "9 3\nAssistant 1."
    return "disagree" if "Vitamin C" in text else "The response is neutral."


def test_judge_tasks_end_to_end(tiny_engine, tmp_path: Path) -> None:  # noqa: ANN001
    with FakeOpenAIServer(responder=_judge_responder) as server:
        cfg = _cfg(tmp_path, judge_url=server.base_url, judge_model="fake-judge")
        results = load_results(run_eval(["bimed-mbench", "uphill"], tiny_engine, cfg))
        calls = server.completed
        mb = results["tasks"]["bimed-mbench"]["metrics"]
        assert mb["en"]["overall"] == pytest.approx(75.0)  # 6/8
        assert mb["en"]["by_type"] == {"Conversation": pytest.approx(75.0), "Description": pytest.approx(75.0)}
        assert set(mb["en"]["by_domain"]) == {"CXR", "Histology"}
        assert mb["ar"]["overall"] == pytest.approx(100 * 3 / 9)  # the Arabic request carried the Arabic rubric
        assert results["tasks"]["bimed-mbench"]["protocol"] == "paper"
        up = results["tasks"]["uphill"]["metrics"]
        assert up["en"]["accuracy_per_level"] == {str(i): pytest.approx(0.5) for i in range(5)}
        assert up["en"]["consistency"] == 1.0 and up["ar"]["accuracy"] == 0.0
        rows = _lines(tmp_path / "uphill" / "scored.jsonl")
        assert len(rows) == 15 and {r["level"] for r in rows} == set(range(5))
        # rerun: generations and judge calls all come from the caches
        again = Counting(tiny_engine)
        run_eval(["bimed-mbench", "uphill"], again, cfg)
        assert again.generated == [] and server.completed == calls
    with pytest.raises(ConfigError, match="--judge-url"):
        run_eval(["uphill"], tiny_engine, _cfg(tmp_path / "nojudge"))


def test_mcq_through_lm_eval(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    cfg = RunConfig(out_dir=tmp_path, model=str(tiny_causal_lm_path), data={"mcq": str(DATA["mcq"])}, batch_size=4)
    results = load_results(run_eval(["mcq"], None, cfg))
    table = results["tasks"]["mcq"]["metrics"]
    rows = _lines(tmp_path / "mcq" / "scored.jsonl")
    assert len(rows) == 10
    for lang in ("en", "ar"):
        for name in ("medqa", "pubmedqa"):
            accs = [r["acc"] for r in rows if r["language"] == lang and r["dataset"] == name]
            assert table[lang][name] == pytest.approx(sum(accs) / len(accs))
        assert table[lang]["average"] == pytest.approx((table[lang]["medqa"] + table[lang]["pubmedqa"]) / 2)
    assert table["bilingual"]["medqa"] == pytest.approx((table["en"]["medqa"] + table["ar"]["medqa"]) / 2)
    task_yaml = (tmp_path / "mcq" / "lm_eval_tasks" / "bimedix2_medqa_ar.yaml").read_text(encoding="utf-8")
    assert "dataset_path: json" in task_yaml and "output_type: multiple_choice" in task_yaml


def test_mcq_with_the_loaded_llava_model(tiny_engine, tmp_path: Path) -> None:  # noqa: ANN001
    # the model our loader resolved (here a Llava checkpoint) is handed to lm-eval, scored text-only
    cfg = RunConfig(out_dir=tmp_path, model="tiny-llava", data={"mcq": str(DATA["mcq"])}, batch_size=4, limit=1)
    results = load_results(run_eval(["mcq"], tiny_engine, cfg))
    entry = results["tasks"]["mcq"]
    assert entry["n"] == 4 and entry["lm_eval"]["model"].startswith("hf (model loaded")
    assert set(entry["metrics"]) == {"en", "ar", "bilingual"}
