"""`eval conversations` on the real embedded SmolLM2: in-process and through `bimedix2 serve` (greedy) it
holds the same multi-turn conversations, English and Arabic; served, it can also play the LLM patient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.engine import Engine
from bimedix2.eval.conversation_eval import JudgeSpec, Side, evaluate
from bimedix2.eval.conversations import EndpointResponder, EngineResponder, Patient, load_script
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig
from bimedix2.types import GenParams

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[1] / "fixtures" / "conversations" / "script.jsonl"
PARAMS = GenParams(max_new_tokens=24, temperature=0.0)
CONFIG = {"script_sha256": "x", "a": "local", "b": "served", "patient": "script", "judge": "j", "params": {}}


def _same_or_not(body: dict) -> str:
    """A fake judge: Tie when both transcripts hold the same assistant turns, else Assistant 1."""
    text = body["messages"][1]["content"]
    first, _, rest = text.partition("[End of conversation with Assistant 1]")
    second = rest.partition("[End of conversation with Assistant 2]")[0]
    norm = lambda s, n: s.replace(f"Assistant {n}", "X")  # noqa: E731
    return "Tie" if norm(first, 1).strip() == norm(second, 2).strip() else "Assistant 1"


def _stored(out: Path, side: str) -> dict[str, list[dict]]:
    lines = (out / "conversations" / f"{side}.jsonl").read_text(encoding="utf-8").splitlines()[1:]
    return {r["id"]: r["turns"] for r in map(json.loads, lines)}


def test_in_process_and_served_smollm2_hold_the_same_conversations(smollm2_engine: Engine, tmp_path: Path) -> None:
    items = [i for i in load_script(SCRIPT) if i.id in ("chest-pain-en", "headache-ar")]  # three turns each
    out = tmp_path / "out"
    app = create_app(smollm2_engine, ServeConfig(model_id="smol", batch_window_s=0.0))
    with serve_in_thread(app) as base, FakeOpenAIServer(responder=_same_or_not) as judge:
        sides = {
            "a": Side("local", EngineResponder(lambda: smollm2_engine, PARAMS, "smollm2", batch_size=2)),
            "b": Side("served", EndpointResponder(f"{base}/v1", "smol", PARAMS, out / "b.sqlite", concurrency=2)),
        }
        results = evaluate(items, sides, Patient(), JudgeSpec(judge.base_url, "j"), PARAMS, out, CONFIG, n_resamples=0)
    local, served = _stored(out, "a"), _stored(out, "b")
    assert local == served
    assert len(local["chest-pain-en"]) == 6 and len(local["headache-ar"]) == 6
    assert all(t["content"].strip() for conv in local.values() for t in conv if t["role"] == "assistant")
    assert results["win_tie_loss"]["overall"]["tie"] == 1.0 and results["win_tie_loss"]["ar"]["n"] == 1


def test_served_smollm2_plays_the_patient(smollm2_engine: Engine, tmp_path: Path) -> None:
    items = [i for i in load_script(SCRIPT) if i.id in ("chest-pain-en", "headache-ar")]
    out = tmp_path / "out"
    app = create_app(smollm2_engine, ServeConfig(model_id="smol", batch_window_s=0.0))
    with serve_in_thread(app) as base, FakeOpenAIServer(responder=lambda body: "Tie") as judge:
        url = f"{base}/v1"
        patient = Patient(EndpointResponder(url, "smol", PARAMS, out / "p.sqlite"), follow_ups=1)
        sides = {
            "a": Side("a", EngineResponder(lambda: smollm2_engine, PARAMS, "smollm2")),
            "b": Side("b", EndpointResponder(url, "smol", PARAMS, out / "b.sqlite")),
        }
        evaluate(items, sides, patient, JudgeSpec(judge.base_url, "j"), PARAMS, out, CONFIG, n_resamples=0)
    for side in ("a", "b"):
        for turns in _stored(out, side).values():
            assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
            assert turns[2]["content"]  # the patient's follow-up, written by the model
