"""`eval run --endpoint`: the toolkit's own server (`bimedix2 serve`, in-thread) answers exactly what the
in-process path answers on the same model and engine (greedy), images travelling as data: URLs;
its refusals (wrong key, a model it does not serve) are clear errors."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bimedix2.engine import Engine
from bimedix2.eval.endpoint import EndpointError
from bimedix2.eval.runner import RunConfig, load_results, run_eval
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig

pytestmark = pytest.mark.integration
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
DATA = {"vqa-rad": str(FIX / "vqa-rad"), "mimic-iii-summarization": str(FIX / "mimic-iii")}
MODEL = "served-model"


@contextlib.contextmanager
def served(engine: Engine, **config: object) -> Iterator[str]:
    app = create_app(engine, ServeConfig(model_id=MODEL, **config))  # type: ignore[arg-type]
    with serve_in_thread(app) as base:
        yield f"{base}/v1"


def _predictions(out: Path, task: str) -> dict[str, str]:
    rows = [json.loads(line) for line in (out / task / "scored.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r["prediction"] for r in rows}


def _scored(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "scored.jsonl").read_text(encoding="utf-8").splitlines() if x]


def _both_ways(engine: Engine, task: str, tmp_path: Path, **run: object) -> tuple[dict, dict, dict]:
    common = {"data": DATA, "protocol": "toolkit", "bootstrap": 0, **run}  # toolkit: greedy (temperature 0)
    local_cfg = RunConfig(out_dir=tmp_path / "local", model="same-model", **common)  # type: ignore[arg-type]
    run_eval([task], engine, local_cfg)
    with served(engine) as url:
        remote_cfg = RunConfig(
            out_dir=tmp_path / "remote",
            model="same-model",
            endpoint=url,
            endpoint_model=MODEL,
            endpoint_concurrency=3,
            **common,  # type: ignore[arg-type]
        )
        results = load_results(run_eval([task], None, remote_cfg))
    return _predictions(tmp_path / "local", task), _predictions(tmp_path / "remote", task), results


def test_vqa_through_the_server_matches_in_process(tiny_engine: Engine, tmp_path: Path) -> None:
    """The vision fixture task on the tiny LLaVA (images go as padded-PNG data: URLs)."""
    local, remote, results = _both_ways(tiny_engine, "vqa-rad", tmp_path, max_new_tokens=12, batch_size=2)
    assert len(local) == 3 and remote == local
    assert results["model"].startswith(f"{MODEL} @ http://127.0.0.1:")
    entry = results["tasks"]["vqa-rad"]
    assert entry["generation"]["remote"] is True and entry["generation"]["model"] == MODEL
    assert entry["generation"]["request"] == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 12, "seed": 0}


def test_smollm2_summarization_through_the_server_matches_in_process(smollm2_engine: Engine, tmp_path: Path) -> None:
    """The embedded SmolLM2 (text-only: it cannot take the VQA task's images) on the text fixture task."""
    local, remote, results = _both_ways(smollm2_engine, "mimic-iii-summarization", tmp_path, max_new_tokens=24)
    assert len(local) >= 2 and remote == local
    assert all(local.values())  # real text, not empty replies agreeing trivially
    assert results["generation"]["endpoint"].startswith("http://127.0.0.1:")


def test_refusals_are_clear_errors(tiny_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with served(tiny_engine, api_key="right-key") as url:
        cfg = RunConfig(
            out_dir=tmp_path / "a", model="m", data=DATA, endpoint=url, endpoint_model=MODEL, bootstrap=0, limit=1
        )
        monkeypatch.delenv("BIMEDIX2_ENDPOINT_KEY", raising=False)
        with pytest.raises(EndpointError, match=r"HTTP 401.*\$BIMEDIX2_ENDPOINT_KEY, which is not set"):
            run_eval(["vqa-rad"], None, cfg)
        monkeypatch.setenv("BIMEDIX2_ENDPOINT_KEY", "wrong-key")
        with pytest.raises(EndpointError, match="is set but was refused"):
            run_eval(["vqa-rad"], None, cfg)
        monkeypatch.setenv("BIMEDIX2_ENDPOINT_KEY", "right-key")
        other = RunConfig(
            out_dir=tmp_path / "b", model="m", data=DATA, endpoint=url, endpoint_model="no-such", bootstrap=0, limit=1
        )
        with pytest.raises(EndpointError, match=rf"does not serve model 'no-such'; it serves: {MODEL}"):
            run_eval(["vqa-rad"], None, other)
        results = load_results(run_eval(["vqa-rad"], None, cfg))
        assert results["tasks"]["vqa-rad"]["n"] == 1
        written = "".join(p.read_text(encoding="utf-8", errors="replace") for p in (tmp_path / "a").rglob("*.json*"))
        assert "right-key" not in written


def test_smollm2_generative_mcq_through_the_server_matches_in_process(smollm2_engine: Engine, tmp_path: Path) -> None:
    data = {"mcq": str(FIX / "mcq")}
    common = {"data": data, "bootstrap": 0, "max_new_tokens": 12}
    local_cfg = RunConfig(out_dir=tmp_path / "local", model="m", mcq_mode="generative", **common)  # type: ignore[arg-type]
    local = load_results(run_eval(["mcq"], smollm2_engine, local_cfg))
    with served(smollm2_engine) as url:
        remote_cfg = RunConfig(
            out_dir=tmp_path / "remote",
            model="m",
            endpoint=url,
            endpoint_model=MODEL,
            **common,  # type: ignore[arg-type]
        )
        remote = load_results(run_eval(["mcq"], None, remote_cfg))  # generative: chosen by --endpoint
    rows = {side: _scored(tmp_path / side / "mcq") for side in ("local", "remote")}
    assert len(rows["local"]) == 10
    pairs = {side: [(r["prediction"], r["parsed"]) for r in rows[side]] for side in rows}
    assert pairs["remote"] == pairs["local"]
    assert remote["tasks"]["mcq"]["mcq_mode"] == local["tasks"]["mcq"]["mcq_mode"] == "generative"
    assert remote["tasks"]["mcq"]["metrics"] == local["tasks"]["mcq"]["metrics"]
