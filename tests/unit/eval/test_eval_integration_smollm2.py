"""The eval harness's MCQ path (lm-eval) on the real embedded default model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bimedix2.eval.runner import RunConfig, load_results, run_eval

pytestmark = pytest.mark.integration
FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"


def test_smollm2_mcq_through_lm_eval(smollm2_engine, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = RunConfig(
        out_dir=tmp_path, model="smollm2-135m-instruct", batch_size=4, limit=2, data={"mcq": str(FIX / "mcq")}
    )
    results = load_results(run_eval(["mcq"], smollm2_engine, cfg))
    mcq = results["tasks"]["mcq"]["metrics"]
    rows = [json.loads(x) for x in (tmp_path / "mcq" / "scored.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 8  # 2 datasets x 2 languages x the first 2 questions
    for lang in ("en", "ar"):
        for name in ("medqa", "pubmedqa"):
            accs = [r["acc"] for r in rows if r["language"] == lang and r["dataset"] == name]
            assert len(accs) == 2 and mcq[lang][name] == pytest.approx(sum(accs) / 2)
    assert mcq["bilingual"]["average"] == pytest.approx((mcq["en"]["average"] + mcq["ar"]["average"]) / 2)
