"""The "done when" demo against the toolkit's own server: `bimedix2 eval baselines` evaluates the tiny LLaVA
in-process and the same checkpoint served by `bimedix2 serve` (in-thread) on the fixtures, greedy, and the
side-by-side report shows both columns with the same numbers, an interval on each, the paper column and the
judge's position bias (the judge: the fake OpenAI server)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.cli import main
from bimedix2.engine import Engine
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "eval" / "baselines-tiny.yaml"
CELL = re.compile(r"[+-]?\d+\.\d+ \[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")


def test_demo_in_process_and_through_bimedix2_serve_agree(
    tiny_engine: Engine, tiny_llava_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "demo"
    app = create_app(tiny_engine, ServeConfig(model_id="served-tiny"))
    with serve_in_thread(app) as base, FakeOpenAIServer(responder=lambda body: "7 5\nAssistant 1.") as judge:
        args = ["eval", "baselines", str(DEMO), "--out", str(out), "--model", f"toolkit-tiny={tiny_llava_path}"]
        args += ["--endpoint", f"served={base}/v1", "--run", f"judge_url={judge.base_url}", "--run", "protocol=toolkit"]
        assert main(args) == 0
    md = (out / "report" / "report.md").read_text(encoding="utf-8")
    table = md.split("## Side by side")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in table.splitlines()[3:] if line.startswith("| ")]
    metric_rows = [r for r in rows if r[1] != "(protocol)"]
    assert len(metric_rows) > 30
    # greedy: the served model's numbers are the in-process model's, cell for cell
    assert all(r[2] == r[3] for r in metric_rows), [r for r in metric_rows if r[2] != r[3]]
    measured = [r[2] for r in metric_rows if r[2] not in ("-", "n/a")]
    assert measured and all(CELL.fullmatch(c) for c in measured)
    assert any(r[1] == "judge swap / Arabic / position_bias" and CELL.fullmatch(r[2]) for r in metric_rows)
    assert any(r[1] == "multimedeval / closed_accuracy" and r[4].startswith("72.5") for r in metric_rows)
    assert "| VQA-RAD (vqa-rad) | (protocol) | toolkit | toolkit, endpoint | published |" in table
    for task in ("vqa-rad", "slake", "path-vqa", "mimic-iii-summarization", "bimed-mbench"):
        preds = {
            side: {r["id"]: r["prediction"] for r in map(json.loads, lines.splitlines())}
            for side in ("toolkit-tiny", "served")
            if (lines := (out / side / task / "scored.jsonl").read_text(encoding="utf-8"))
        }
        assert preds["served"] == preds["toolkit-tiny"] and any(preds["served"].values()), task
