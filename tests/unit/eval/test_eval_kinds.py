"""Evaluation kinds as a registry: a kind defined here plugs in with one registration, runs end to end
through `run_eval` with a fake generator, and shows in the report through its own table; typed options."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bimedix2.errors import ConfigError
from bimedix2.eval.datasets import EvalSample, read_jsonl
from bimedix2.eval.kinds import GenerationKind, TaskRun, get_kind, kind_names, register_kind
from bimedix2.eval.report import render_report
from bimedix2.eval.results import load_results
from bimedix2.eval.runner import RunConfig, run_eval
from bimedix2.eval.tables import ModelResults, Table, pct
from bimedix2.eval.tasks import load_task
from bimedix2.types import Message, Reply


@dataclass(frozen=True)
class EchoOptions:
    suffix: str = ""


@register_kind("test-echo")
class Echo(GenerationKind):
    """Exact match of the model's answer (+ the task's suffix) with the reference."""

    Options = EchoOptions

    def read(self, task: TaskRun) -> list[EvalSample]:
        return [EvalSample(str(r["id"]), r["q"], r["a"]) for _, r in read_jsonl(task.data_path())]

    def prompt(self, task: TaskRun, sample: EvalSample) -> list[Message]:
        return [Message("user", task.spec.prompt.format(question=sample.text))]

    def score(self, task: TaskRun, samples: list[EvalSample], predictions: dict[str, str], scorers: Any) -> list[dict]:
        suffix = task.options.suffix
        return [
            {"id": s.id, "prediction": predictions[s.id], "hit": predictions[s.id] + suffix == s.reference}
            for s in samples
        ]

    def aggregate(self, task: TaskRun, samples: list[EvalSample], rows: list[dict]) -> dict[str, Any]:
        return {"metrics": {"exact": sum(r["hit"] for r in rows) / len(rows)}, "n": len(rows)}

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        rows = tuple((r.label, t, pct(e["metrics"]["exact"])) for r in results for t, e in r.tasks.items())
        return [Table("Echo exact match (%)", ("Model", "Task", "Exact"), rows)] if rows else []


class UpperGenerator:
    """A fake Generator: answers the last user turn in upper case."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate_batch(self, conversations, params=None, sample_ids=None) -> list[Reply]:  # noqa: ANN001
        texts = [conv[-1].content for conv in conversations]
        self.prompts += texts
        return [Reply(t.upper(), "en", 1, 1, "stop") for t in texts]


def _task(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "echo.yaml"
    path.write_text(f"name: echo\nkind: test-echo\ntitle: Echo\nprompt: 'say {{question}}'\n{body}", encoding="utf-8")
    return path


def test_a_new_kind_runs_end_to_end_and_reports_its_table(tmp_path: Path) -> None:
    data = tmp_path / "echo.jsonl"
    data.write_text('{"id": 1, "q": "hi", "a": "SAY HI!"}\n{"id": 2, "q": "yo", "a": "nope"}\n', encoding="utf-8")
    gen = "generation: {max_new_tokens: 4, temperature: 0.0}\n"
    task = _task(tmp_path, "suffix: ''\n" + gen)
    cfg = RunConfig(out_dir=tmp_path / "out", model="fake", data={"echo": str(data)}, batch_size=1)
    generator = UpperGenerator()
    results = load_results(run_eval([str(task)], generator, cfg))
    entry = results["tasks"]["echo"]
    assert entry["kind"] == "test-echo" and entry["metrics"] == {"exact": 0.0} and entry["n"] == 2
    assert generator.prompts == ["say hi", "say yo"]
    assert results["config"]["echo"]["task"]["suffix"] == ""
    rows = [json.loads(line) for line in (tmp_path / "out" / "echo" / "scored.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == ["SAY HI", "SAY YO"]
    # typed options change the scoring; the prediction cache is reused (same prompt and decoding)
    _task(tmp_path, "suffix: '!'\n" + gen)
    again = UpperGenerator()
    results = load_results(run_eval([str(task)], again, cfg))
    assert results["tasks"]["echo"]["metrics"] == {"exact": 0.5} and again.prompts == []
    md = render_report([tmp_path / "out" / "results.json"], tmp_path / "rep")["markdown"].read_text(encoding="utf-8")
    assert "## Echo exact match (%)" in md and "| fake | echo | 50.0 |" in md


def test_unknown_kind_option_and_kind_are_errors_naming_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'sufix'.*allowed: .*suffix"):
        load_task(str(_task(tmp_path, "sufix: x\n")))
    with pytest.raises(ConfigError, match=r"suffix: expected a string"):
        load_task(str(_task(tmp_path, "suffix: [1]\n")))
    with pytest.raises(ConfigError, match=r"unknown evaluation kind 'nope'. Available: .*mcq.*vqa"):
        get_kind("nope")
    (tmp_path / "bad.yaml").write_text("name: bad\nkind: nope\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="Available: "):
        load_task(str(tmp_path / "bad.yaml"))
    with pytest.raises(ValueError, match="already registered"):
        register_kind("test-echo")(Echo)
    assert {"vqa", "report", "summarization", "mcq", "mbench", "uphill", "test-echo"} <= set(kind_names())


def test_builtin_kinds_reject_unknown_options(tmp_path: Path) -> None:
    mcq = tmp_path / "mcq.yaml"
    mcq.write_text("name: m\nkind: mcq\nnum_fewshots: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'num_fewshots'.*num_fewshot"):
        load_task(str(mcq))
    judge = tmp_path / "up.yaml"
    judge.write_text("name: u\nkind: uphill\njudge: {temperature: 0, max_token: 5}\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"judge.max_token: unknown field \(known here: max_tokens, model, temperature\)"
    ):
        load_task(str(judge))
    slake = tmp_path / "slake.yaml"
    slake.write_text("name: s\nkind: vqa\ndataset: {format: slake-json, options: {language: [en]}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dataset.options.language: unknown field \(known here: languages\)"):
        load_task(str(slake))
    gen = tmp_path / "gen.yaml"
    gen.write_text("name: g\nkind: vqa\ngeneration: {max_tokens: 5}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"generation.max_tokens: unknown field"):
        load_task(str(gen))
