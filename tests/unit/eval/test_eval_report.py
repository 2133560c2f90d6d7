"""Report rendering: markdown + HTML tables in the paper's shapes and the radar PNG; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bimedix2.cli import main
from bimedix2.errors import EvalDataError
from bimedix2.eval.report import radar_axes, reference_results_path, render_report
from bimedix2.eval.results import RESULTS_FORMAT, load_results


def _results(label: str, scale: float) -> dict:
    vqa = {
        "bleu1": 0.5 * scale,
        "closed_accuracy": 0.8 * scale,
        "open_recall": 0.4,
        "recall": 0.6,
        "open_accuracy": 0.3,
        "f1": 0.45,
    }
    return {
        "format": RESULTS_FORMAT,
        "model": label,
        "label": label,
        "notice": "x",
        "config": {},
        "tasks": {
            "vqa-rad": {"metrics": {"multimedeval": vqa, "improved": vqa}},
            "slake": {"metrics": {"multimedeval": vqa, "improved": vqa}},
            "mcq": {
                "metrics": {
                    "en": {"medqa": 0.6, "average": 0.6},
                    "ar": {"medqa": 0.5, "average": 0.5},
                    "bilingual": {"medqa": 0.55, "average": 0.55},
                }
            },
            "mimic-cxr-report": {
                "metrics": {"bleu1": 0.3, "bleu4": 0.1, "rougeL": 0.25, "meteor": 0.2, "f1_radgraph": None},
                "unavailable": {"f1_radgraph": "unavailable: needs the RadGraph model"},
            },
            "bimed-mbench": {
                "metrics": {
                    "en": {"overall": 80.0 * scale, "by_type": {"Conversation": 82.0}, "by_domain": {"CXR": 70.0}},
                    "ar": {"overall": 60.0, "by_type": {"Conversation": 61.0}, "by_domain": {"CXR": 55.0}},
                }
            },
            "uphill": {
                "metrics": {
                    "en": {"accuracy_per_level": {str(i): 0.9 for i in range(5)}, "accuracy": 0.9, "consistency": 0.8}
                }
            },
        },
    }


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_render_report_tables_and_png(tmp_path: Path) -> None:
    a = _write(tmp_path, "a", _results("model-a", 1.0))
    b = _write(tmp_path, "b", _results("model-b", 0.5))
    out = render_report([a, b], tmp_path / "rep", with_reference=True)
    with Image.open(out["radar"]) as png:
        assert png.format == "PNG" and png.size[0] > 300
    md = out["markdown"].read_text(encoding="utf-8")
    assert (
        "paper Table 2 shape" in md and "| model-a | English | 60.0 |" in md and "| model-b | Bilingual | 55.0 |" in md
    )
    assert "MultiMedEval metrics, paper Table 5 shape" in md and "IMPROVED mode (ours, not comparable" in md
    assert "| model-a | 50.0 | 80.0 | 40.0 | 60.0 | 30.0 | 45.0 |" in md  # VQA-RAD block of the row
    assert "| model-b | 25.0 | 40.0 |" in md
    assert "n/a" in md and "needs the RadGraph model" in md  # unavailable, never 0
    assert "| model-a | English | 82.0 | - | 70.0 |" in md
    assert "| model-a | English | 90.0 | 90.0 | 90.0 | 90.0 | 90.0 | 90.0 | 80.0 |" in md
    assert "not for clinical use" in md and "radar.png" in md
    html = out["html"].read_text(encoding="utf-8")
    assert html.count("<table>") == md.count("\n## ") - 1 and "dir='auto'" in html
    axes = radar_axes([load_results(a), load_results(b)])
    assert axes["Conversation (EN)"] == {"model-a": 82.0, "model-b": 82.0}
    assert axes["MCQ (Bilingual)"]["model-a"] == pytest.approx(55.0)


def test_reference_file_is_honest() -> None:
    """Every shipped paper number names its table; nothing re-scaled passes for a raw metric."""
    ref = load_results(reference_results_path())
    assert ref["tasks"] and ref["candidates_unverified"]
    for name, entry in ref["tasks"].items():
        assert "2412.07769" in json.dumps(entry["source"]), name
    for task in ("mimic-cxr-report", "mimic-iii-summarization"):
        metrics, unavailable = ref["tasks"][task]["metrics"], ref["tasks"][task]["unavailable"]
        assert metrics["bleu4"] is None and metrics["radcliq"] is None and {"bleu4", "radcliq"} <= set(unavailable)


def test_bad_results_file(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="not a bimedix2 eval results file"):
        render_report([_write(tmp_path, "x", {"hello": 1})], tmp_path / "r")
    with pytest.raises(EvalDataError, match="not found"):
        render_report([tmp_path / "missing.json"], tmp_path / "r")


def test_cli_report_tasks_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path, "a", _results("model-a", 1.0))
    assert main(["eval", "report", str(a), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "radar.png").is_file() and (tmp_path / "rep" / "report.html").is_file()
    assert main(["eval", "tasks"]) == 0
    assert "vqa-rad" in capsys.readouterr().out
    # missing data is reported before any model is loaded
    assert main(["eval", "run", "vqa-rad", "--out", str(tmp_path / "o"), "--model", "/nonexistent-model"]) == 2
    assert "--data vqa-rad=PATH" in capsys.readouterr().err
    assert main(["eval", "run", "vqa-rad", "--out", str(tmp_path / "o"), "--data", "vqa-rad"]) == 2
    assert "TASK=PATH" in capsys.readouterr().err


def test_cli_run_end_to_end(tiny_llava_path: Path, tmp_path: Path) -> None:
    fix = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
    rc = main(
        [
            "eval",
            "run",
            "slake",
            "--model",
            str(tiny_llava_path),
            "--data",
            f"slake={fix / 'slake'}",
            "--out",
            str(tmp_path),
            "--max-new-tokens",
            "4",
            "--label",
            "tiny",
        ]
    )
    assert rc == 0
    results = load_results(tmp_path / "results.json")
    assert results["label"] == "tiny" and results["tasks"]["slake"]["n"] == 2
    assert results["config"]["slake"]["run"]["max_new_tokens"] == 4


def test_cli_run_from_config(tiny_llava_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(root)  # the config's fixture paths are relative to the repository root
    cfg = root / "configs" / "eval" / "tiny.yaml"
    args = ["eval", "run", "--config", str(cfg), "--model", str(tiny_llava_path), "--out", str(tmp_path)]
    assert main([*args, "slake", "--max-new-tokens", "3"]) == 0
    results = load_results(tmp_path / "results.json")
    assert list(results["tasks"]) == ["slake"]  # positional tasks override the config's list
    run = results["config"]["slake"]["run"]
    assert run["max_new_tokens"] == 3 and run["batch_size"] == 2 and results["label"] == "tiny"
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [slake]\nfrobnicate: 1\n")
    assert main(["eval", "run", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2


def test_shipped_eval_configs_are_valid() -> None:
    from bimedix2.commands.eval import EvalRunOptions
    from bimedix2.config import from_dict, load_yaml
    from bimedix2.eval.tasks import list_tasks, load_task

    for path in (Path(__file__).resolve().parents[3] / "configs" / "eval").glob("*.yaml"):
        if path.name.startswith("baselines"):  # a baselines file, not a run config (test_eval_baselines loads it)
            continue
        options = from_dict(EvalRunOptions, load_yaml(path))
        assert options.tasks and set(options.tasks) <= set(list_tasks()), path
        assert set(options.data) <= set(options.tasks), path
        for task in options.tasks:
            load_task(task)


def test_reference_renders_beside_a_result(tmp_path: Path) -> None:
    """The shipped BiMediX2 8B numbers (arXiv:2412.07769 Tables 2-7, Sec. 4) stand beside a user's run."""
    ref = load_results(reference_results_path())
    tasks = ref["tasks"]
    for entry in tasks.values():  # fractions everywhere, except BiMed-MBench relative scores (percent)
        for lang_or_mode in entry["metrics"].values():
            values = lang_or_mode.values() if isinstance(lang_or_mode, dict) else [lang_or_mode]
            for v in values:
                if isinstance(v, float) and entry["kind"] != "mbench":
                    assert 0.0 <= v <= 1.0
    assert tasks["mcq"]["metrics"]["en"]["usmle"] == pytest.approx(0.686)
    assert tasks["slake"]["metrics"]["multimedeval"]["closed_accuracy"] == pytest.approx(0.831)
    assert tasks["bimed-mbench"]["metrics"]["ar"]["overall"] == pytest.approx(50.5)
    assert (
        "Table 5" in tasks["vqa-rad"]["source"]["primary"]
        and "Table 7" in tasks["mimic-cxr-report"]["source"]["primary"]
    )
    mine = _write(tmp_path, "mine", _results("model-a", 1.0))
    out = render_report([mine], tmp_path / "rep", with_reference=True)
    md = out["markdown"].read_text(encoding="utf-8")
    label = ref["label"]
    assert f"| {label} | English | 57.0 | 58.0 | 72.4 | 68.6 | 77.7 | 79.2 | 68.8 | 82.0 | 74.3 | 65.9 | 70.4 |" in md
    assert f"| {label} | 55.2 | 72.5 | 36.3 | 56.5 | 30.5 | 56.9 | 77.8 | 83.1 |" in md  # Table 5, beside model-a
    assert f"| {label} | MIMIC-III summarization | 17.8 | n/a | 20.5 | 33.9 | 23.0 | 59.3 | - | n/a |" in md
    assert f"| {label} | Arabic | 54.3 | 36.2 | 61.4 | 44.6 | 51.5 | 43.5 | 50.8 | 50.5 |" in md
    assert f"| {label} | English | - | - | - | - | - | 56.1 | - |" in md  # UPHILL: overall only, no levels
    assert "re-scaled" in md and "| model-a | English | 60.0 |" in md
    improved = md.split("IMPROVED mode")[1].split("\n## ")[0]
    assert label not in improved  # the paper has no improved-mode numbers
    axes = radar_axes([load_results(mine), ref])
    assert axes["MCQ (English)"][label] == pytest.approx(70.4) and axes["CT (AR)"][label] == pytest.approx(50.8)


def _with_intervals(data: dict) -> dict:
    """A copy whose every metric leaf carries a [v - 0.1, v + 0.1] interval (the runner's ci95 nesting)."""

    def ci(node: object) -> object:
        if isinstance(node, dict):
            return {k: ci(v) for k, v in node.items() if v is not None}
        return [node - 0.1, node + 0.1]  # type: ignore[operator]

    return {**data, "tasks": {t: {**e, "ci95": ci(e["metrics"])} for t, e in data["tasks"].items()}}


def _side_by_side(md: str) -> str:
    return md.split("## Side by side")[1].split("\n## ")[0]


def test_side_by_side_one_column_per_run_with_intervals_and_the_paper_column(tmp_path: Path) -> None:
    a = _with_intervals(_results("model-a", 1.0))
    a["tasks"]["mcq"]["mcq_mode"] = "generative"
    b = _results("model-b", 0.5)  # no intervals: bare numbers, named in a note
    run_dir = tmp_path / "run-a"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(a), encoding="utf-8")
    out = render_report([run_dir, _write(tmp_path, "b", b)], tmp_path / "rep")  # a run folder or a results.json
    table = _side_by_side(out["markdown"].read_text(encoding="utf-8"))
    label = load_results(reference_results_path())["label"]
    assert f"| Task | Metric | model-a | model-b | paper (reported): {label} |" in table
    assert "| VQA-RAD (vqa-rad) | (protocol) | not recorded | not recorded | published |" in table
    assert "|  | multimedeval / closed_accuracy | 80.0 [70.0, 90.0] | 40.0 | 72.5 |" in table
    assert "|  | improved / closed_accuracy | 80.0 [70.0, 90.0] | 40.0 | - |" in table  # no paper number
    assert "| Medical MCQ (mcq) | (protocol) | not recorded, MCQ generative | not recorded | published |" in table
    assert "|  | English / usmle | - | - | 68.6 |" in table  # the paper's row, not run here
    assert "|  | f1_radgraph | n/a | n/a | 9.8 |" in table  # unavailable: n/a, never 0
    assert "|  | English / overall | 80.0 [79.9, 80.1] | 40.0 | 62.2 |" in table  # MBench: percent already
    assert "No intervals recorded (run without --bootstrap or an older file): model-b." in table
    assert "reported, not measured here" in table
    without = render_report([run_dir], tmp_path / "rep2", paper_column=False)["markdown"].read_text(encoding="utf-8")
    assert "| Task | Metric | model-a |\n" in _side_by_side(without) and "published" not in _side_by_side(without)


def test_side_by_side_arabic_task_names_render_rtl_safe(tmp_path: Path) -> None:
    data = _results("نموذج", 1.0)
    data["tasks"] = {
        "ar-vqa": {"kind": "vqa", "title": "أسئلة طبية | مرئية", "metrics": data["tasks"]["slake"]["metrics"]}
    }
    out = render_report([_write(tmp_path, "ar", data)], tmp_path / "rep")
    md = _side_by_side(out["markdown"].read_text(encoding="utf-8"))
    assert "| أسئلة طبية \\| مرئية (ar-vqa) | (protocol) |" in md  # the cell's own | escaped
    html = out["html"].read_text(encoding="utf-8")
    assert "<td dir='auto'><bdi>أسئلة طبية | مرئية (ar-vqa)</bdi></td>" in html
    assert "<th dir='auto'>نموذج</th>" in html and "<html lang='en' dir='ltr'>" in html


def test_cli_report_takes_run_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_with_intervals(_results("model-a", 1.0))), encoding="utf-8")
    assert main(["eval", "report", str(run), "--out", str(tmp_path / "rep"), "--no-paper-column"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "| Task | Metric | model-a |" in md and "paper (reported)" not in md
    assert main(["eval", "report", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "rep3")]) == 2
    assert "results file not found" in capsys.readouterr().err
