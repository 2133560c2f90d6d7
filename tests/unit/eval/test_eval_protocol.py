"""`--protocol paper` (the released code's settings and the paper's prompts) vs `--protocol toolkit`
(our improvements) for the VQA, report, summarization and BiMed-MBench tasks; results.json and
reports say which one ran."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.eval.test_eval_mbench_released import RELEASED, RecordingGenerator

from bimedix2.errors import ConfigError
from bimedix2.eval.report import render_report
from bimedix2.eval.runner import RunConfig, load_results, run_eval
from bimedix2.eval.tasks import load_task
from bimedix2.types import GenParams

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
RELEASED_DECODING = GenParams(max_new_tokens=1024, temperature=0.1, top_p=1.0, do_sample=True, seed=0)


@pytest.mark.parametrize(
    ("task", "paper_prompt", "toolkit_prompt", "toolkit"),
    [
        ("vqa-rad", "{question}", "{question}", GenParams(max_new_tokens=64, temperature=0.0, do_sample=False, seed=0)),
        ("slake", "{question}", "{question}", GenParams(max_new_tokens=64, temperature=0.0, do_sample=False, seed=0)),
        (
            "path-vqa",
            "{question}",
            "{question}",
            GenParams(max_new_tokens=64, temperature=0.0, do_sample=False, seed=0),
        ),
        (
            "mimic-cxr-report",
            "{question}Please caption this scan with findings and impressions.",  # as the paper states it
            "{question}Can you provide a radiology report for this medical image?",  # MultiMedEval's
            GenParams(max_new_tokens=256, temperature=0.0, do_sample=False, seed=0, steer_language=True),
        ),
        (
            "mimic-iii-summarization",
            "{question}\nSummarize the findings.",
            "{question}\nSummarize the findings.",
            GenParams(max_new_tokens=128, temperature=0.0, do_sample=False, seed=0, steer_language=True),
        ),
        (
            "bimed-mbench",
            "{question}",
            "{question}",
            GenParams(max_new_tokens=1024, temperature=0.0, do_sample=False, seed=0, steer_language=True),
        ),
    ],
)
def test_task_settings_per_protocol(task: str, paper_prompt: str, toolkit_prompt: str, toolkit: GenParams) -> None:
    spec = load_task(task)
    paper = spec.for_protocol("paper")
    assert paper.prompt == paper_prompt and paper.gen_params() == RELEASED_DECODING and paper.protocol == "paper"
    assert not paper.gen_params().steer_language  # the released code never adds a language instruction
    tk = spec.for_protocol("toolkit")
    assert tk.prompt == toolkit_prompt and tk.gen_params() == toolkit and tk.protocol == "toolkit"
    assert tk.as_dict()["protocol"] == "toolkit" and "toolkit" in tk.as_dict()
    with pytest.raises(ConfigError, match="unknown protocol 'papers'"):
        spec.for_protocol("papers")


def test_released_sampling_rule() -> None:
    """bimedix_inference.py samples iff temperature > 0.001; an explicit do_sample wins."""
    spec = load_task("vqa-rad")
    from dataclasses import replace

    cold = replace(spec, generation={**spec.generation, "temperature": 0.0005}).for_protocol("paper")
    assert cold.gen_params().do_sample is False
    forced = replace(spec, generation={**spec.generation, "do_sample": False}).for_protocol("paper")
    assert forced.gen_params().do_sample is False


def test_toolkit_block_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\nkind: vqa\ntoolkit: {generation: {temprature: 0}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="temprature"):
        load_task(str(bad))
    bad.write_text("name: t\nkind: vqa\ntoolkit: {prompts: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"toolkit.prompts: unknown field"):
        load_task(str(bad))


def _run(out: Path, tasks: list[str], protocol: str, **kw) -> tuple[RecordingGenerator, dict]:  # noqa: ANN003
    gen = RecordingGenerator()
    data = {"vqa-rad": str(FIX / "vqa-rad"), "mimic-cxr-report": str(FIX / "mimic-cxr"), "bimed-mbench": str(RELEASED)}
    cfg = RunConfig(out_dir=out, model="fake", label=f"run-{protocol}", data=data, protocol=protocol, **kw)
    return gen, load_results(run_eval(tasks, gen, cfg))


def test_runs_follow_and_record_their_protocol(tmp_path: Path) -> None:
    paper_gen, paper = _run(tmp_path / "paper", ["vqa-rad", "mimic-cxr-report"], "paper")
    toolkit_gen, toolkit = _run(tmp_path / "toolkit", ["vqa-rad", "mimic-cxr-report"], "toolkit")
    asked = {sid: conv[-1].content for conv, _, sid in paper_gen.calls}
    assert asked["mimic-cxr-s50000001"] == "Please caption this scan with findings and impressions."
    assert any(text.startswith("Answer the following question with yes or no. ") for text in asked.values())
    assert {p for _, p, _ in paper_gen.calls} == {RELEASED_DECODING}
    tk_asked = {sid: conv[-1].content for conv, _, sid in toolkit_gen.calls}
    assert tk_asked["mimic-cxr-s50000001"] == "Can you provide a radiology report for this medical image?"
    assert {p.temperature for _, p, _ in toolkit_gen.calls} == {0.0}
    for results, protocol in ((paper, "paper"), (toolkit, "toolkit")):
        assert results["protocol"] == protocol
        for task in ("vqa-rad", "mimic-cxr-report"):
            assert results["tasks"][task]["protocol"] == protocol
            assert results["config"][task]["run"]["protocol"] == protocol
            assert results["config"][task]["task"]["protocol"] == protocol
    # the same output folder refuses generations made under the other protocol's settings
    with pytest.raises(Exception, match="other settings"):
        _run(tmp_path / "paper", ["vqa-rad"], "toolkit")


def test_reports_print_the_protocol(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "8 6\nok") as server:
        _, _ = _run(tmp_path / "p", ["vqa-rad", "bimed-mbench"], "paper", judge_url=server.base_url)
        _, _ = _run(tmp_path / "t", ["vqa-rad", "bimed-mbench"], "toolkit", judge_url=server.base_url)
    out = render_report([tmp_path / "p" / "results.json", tmp_path / "t" / "results.json"], tmp_path / "rep", True)
    md = out["markdown"].read_text(encoding="utf-8")
    assert (
        "Protocol (paper = the released code's settings, toolkit = ours): run-paper: paper, run-toolkit: toolkit" in md
    )
    assert "BiMediX2 8B (paper, reference): published" in md
    # VQA (MultiMedEval mode) and BiMed-MBench tables; the reference rows are the paper's published numbers
    both = "- Protocol: run-paper: paper; run-toolkit: toolkit"
    assert md.count(both + "; BiMediX2 8B (paper, reference): published.") == 2
    assert md.count(both + ".\n") == 1  # the improved-mode VQA table: no paper row there
    assert "groups the released table leaves out" in md  # the Arabic-labelled types of the paper run
    html = out["html"].read_text(encoding="utf-8")
    assert "run-toolkit: toolkit" in html
