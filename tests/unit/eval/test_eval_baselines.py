"""Baselines as first-class models: the baselines YAML loader's checks, and the "done when" demo: one
command evaluates the toolkit's own model in-process and an endpoint-served model on the fixtures and
writes the side-by-side table (both columns, an interval on every number, the paper column, the judge's
position bias); a rerun resumes without asking the endpoint or the judge again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.cli import main
from bimedix2.errors import ConfigError
from bimedix2.eval.baselines import load_baselines, plan_runs
from bimedix2.eval.results import load_results

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "configs" / "eval" / "baselines.yaml"
DEMO = ROOT / "configs" / "eval" / "baselines-tiny.yaml"


def _file(tmp_path: Path, models: list[dict[str, Any]], **top: Any) -> Path:
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["vqa-rad"], **top, "models": models}), encoding="utf-8")
    return path


GOOD = {"name": "m", "column": "M", "model": "some/model"}


def test_shipped_baselines_load_and_name_the_papers_models() -> None:
    shipped = load_baselines(SHIPPED)
    columns = {b.column for b in shipped.models}
    assert {"LLaVA-Med", "GPT-4o", "MiniGPT-Med", "RadFM", "Dragonfly-Med", "Meditron 70B", "BiMediXv1"} <= columns
    llava_med = shipped.get("llava-med-v1.5")
    assert llava_med.remote and llava_med.endpoint_model == "microsoft/llava-med-v1.5-mistral-7b" and llava_med.serve
    assert shipped.get("gpt-4o").key_env == "OPENAI_API_KEY"
    assert shipped.get("bimedix2-70b").serve.count("--tensor-parallel-size") == 1
    assert not shipped.get("bimedix2-8b").remote
    demo = load_baselines(DEMO)
    assert [b.remote for b in demo.models] == [False, True]


@pytest.mark.parametrize(
    ("models", "top", "message"),
    [
        ([{**GOOD, "colour": "red"}], {}, r"models\[0\] \(m\)\.colour: unknown field"),
        ([{"name": "m", "model": "x"}], {}, r"models\[0\] \(m\)\.column: required field is missing"),
        ([{**GOOD, "endpoint": "http://h/v1", "endpoint_model": "x"}], {}, r"models\[0\] \(m\).*exactly one of"),
        ([{"name": "e", "column": "E", "endpoint": "http://h/v1"}], {}, r"\(e\).*endpoint_model: required"),
        (
            [{"name": "e", "column": "E", "endpoint": "h:8000", "endpoint_model": "x"}],
            {},
            r"\(e\).*http:// or https://",
        ),
        ([{**GOOD, "key_env": "sk-123"}], {}, r"key_env: only used with endpoint"),
        ([{**GOOD, "tasks": ["no-such-task"]}], {}, r"models\[0\] \(m\): tasks: .*no-such-task"),
        ([{**GOOD, "run": {"temprature": 0}}], {}, r"run\.temprature: unknown run setting"),
        ([GOOD, {**GOOD, "column": "N"}], {}, r"models\[1\] \(m\): name 'm' repeats models\[0\]"),
        ([{**GOOD, "name": "a b"}], {}, r"name 'a b': letters, digits"),
        ([GOOD], {"modles": []}, r"modles: unknown top-level key"),
        ([], {}, r"models: a non-empty list"),
    ],
)
def test_bad_entries_are_errors_naming_the_entry(tmp_path: Path, models: list, top: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_baselines(_file(tmp_path, models, **top))


def test_plan_selects_overrides_and_checks_types(tmp_path: Path) -> None:
    served = {"name": "s.v1", "column": "S", "endpoint": "http://h:1/v1", "endpoint_model": "x"}
    path = _file(tmp_path, [GOOD, served], data={"vqa-rad": "/d"}, run={"max_new_tokens": 4})
    baselines = load_baselines(path)
    plans = plan_runs(baselines, tmp_path / "out", only=["s.v1"], endpoints={"s.v1": "http://other:2/v1"})
    [(b, cfg)] = plans
    assert cfg.out_dir == tmp_path / "out" / "s.v1" and cfg.label == "S" and cfg.max_new_tokens == 4
    assert cfg.endpoint == "http://other:2/v1" and cfg.endpoint_model == "x" and cfg.data == {"vqa-rad": "/d"}
    [(_, cfg)] = plan_runs(baselines, tmp_path / "out", only=["m"], run={"max_new_tokens": 9}, models={"m": "/p"})
    assert cfg.max_new_tokens == 9 and cfg.model == "/p" and not cfg.remote
    with pytest.raises(ConfigError, match=r"no model named 'nope'\. Available: m, s\.v1"):
        plan_runs(baselines, tmp_path, only=["nope"])
    with pytest.raises(ConfigError, match=r"--endpoint m=\.\.\.: model 'm' is loaded here"):
        plan_runs(baselines, tmp_path, endpoints={"m": "http://h/v1"})
    with pytest.raises(ConfigError, match=r"b\.yaml: m: run: max_new_tokens: expected an integer"):
        plan_runs(baselines, tmp_path, run={"max_new_tokens": "many"})
    with pytest.raises(ConfigError, match=r"--run\.judge: unknown run setting"):
        plan_runs(baselines, tmp_path, run={"judge": "x"})


def _demo_responder(body: dict[str, Any]) -> str:
    if body.get("model") == "served-tiny":  # the served model: a closed-question answer for every question
        return "yes"
    return "8 6\nAssistant 1 is better."  # the judge: whichever answer it is shown first gets 2 points more


def _measured_cells(md: str, n_runs: int) -> list[str]:
    """Every measured cell of the side-by-side table's metric rows (not the protocol rows)."""
    table = md.split("## Side by side")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "(protocol)" not in line]
    return [cell for row in rows[1:] for cell in row[2 : 2 + n_runs]]


def test_demo_one_command_compares_in_process_and_endpoint(
    tiny_llava_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)  # the demo file's fixture paths are relative to the repository root
    out = tmp_path / "demo"
    with FakeOpenAIServer(responder=_demo_responder) as server:
        args = ["eval", "baselines", str(DEMO), "--out", str(out), "--model", f"toolkit-tiny={tiny_llava_path}"]
        args += ["--endpoint", f"served={server.base_url}", "--run", f"judge_url={server.base_url}"]
        assert main(args) == 0
        asked = len(server.requests)
        assert main(args) == 0  # a rerun resumes: nothing is asked again
        assert len(server.requests) == asked
    printed = capsys.readouterr().out
    assert f"markdown: {out / 'report' / 'report.md'}" in printed
    served = load_results(out / "served" / "results.json")
    assert served["generation"]["remote"] is True and served["label"] == "served endpoint"
    md = (out / "report" / "report.md").read_text(encoding="utf-8")
    header = next(line for line in md.splitlines() if line.startswith("| Task | Metric |"))
    assert header.startswith("| Task | Metric | toolkit (tiny, in-process) | served endpoint | paper (reported): ")
    # both columns, an interval on every measured number ("-" only where a metric is not defined)
    cells = _measured_cells(md, 2)
    numbers = [c for c in cells if c not in ("-", "n/a")]
    bare = [c for c in numbers if not re.fullmatch(r"[+-]?\d+\.\d+ \[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]", c)]
    assert len(numbers) > 40 and bare == []
    assert "| VQA-RAD (vqa-rad) | (protocol) | paper | paper, endpoint | published |" in md
    assert "|  | multimedeval / closed_accuracy | " in md and " | 72.5 |" in md  # the paper's Table 5 number
    # the served model answers "yes": closed accuracy is the share of closed questions whose answer is yes
    assert served["tasks"]["vqa-rad"]["metrics"]["multimedeval"]["closed_accuracy"] == pytest.approx(1.0)
    # the judge's position bias (asked both ways): first position +2 points, for both runs, with intervals
    bias = [line for line in md.splitlines() if "judge swap / English / position_bias" in line]
    assert len(bias) == 1 and bias[0].count("-2.00 [-2.00, -2.00]") == 2, bias
    assert "judge swap / Arabic / position_bias" in md
    assert "reported, not measured here" in md
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "<th dir='auto'>served endpoint</th>" in html
    assert "<td dir='auto'><bdi>judge swap / Arabic / position_bias</bdi></td>" in html


def test_failed_model_keeps_the_others_and_exits_nonzero(
    tiny_llava_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "demo"
    args = ["eval", "baselines", str(DEMO), "--out", str(out), "--model", f"toolkit-tiny={tiny_llava_path}"]
    args += ["--endpoint", "served=http://127.0.0.1:9/v1", "--run", "judge_url=http://127.0.0.1:9/v1"]
    args += ["--run", "max_new_tokens=2"]
    # the judged task is left out here so the in-process model finishes without a judge
    path = tmp_path / "two.yaml"
    demo = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    demo["tasks"] = ["slake"]
    path.write_text(yaml.safe_dump(demo), encoding="utf-8")
    args[2] = str(path)
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "toolkit-tiny (toolkit (tiny, in-process)): results:" in captured.out
    assert "served (served endpoint): FAILED: " in captured.out and "cannot reach" in captured.out
    assert "it is served with: bimedix2 serve" in captured.out
    assert "1 of 2 models failed (served)" in captured.err
    md = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "toolkit (tiny, in-process)" in md and "served endpoint" not in md
