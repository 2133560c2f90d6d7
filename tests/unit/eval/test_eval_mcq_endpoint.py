"""MCQ through lm-eval's `local-completions` backend (`--mcq-endpoint`), end to end against a fake
OpenAI-compatible completions server on 127.0.0.1 whose prompt logprobs come from the real tiny causal
LM: every option's log-likelihood, and so every accuracy, must equal the `hf` backend's on the same model."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from tests.fakes.completions_server import FakeCompletionsServer
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.cli import main
from bimedix2.errors import ConfigError
from bimedix2.eval.runner import RunConfig, load_results, run_eval

MCQ = Path(__file__).resolve().parents[2] / "fixtures" / "eval" / "mcq"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _n_options() -> int:
    return sum(len(r["options"]) for f in sorted(MCQ.glob("*/*.jsonl")) for r in _lines(f))


def _loglikelihoods(run_dir: Path) -> dict[str, tuple[float, bool]]:
    """lm-eval's per-request cache of one run: {hash of (context, continuation): (logprob, is_greedy)}."""
    from sqlitedict import SqliteDict

    (db,) = sorted((run_dir / "mcq").glob("lm_eval_cache-*.db"))
    with SqliteDict(str(db), flag="r") as cache:
        return {k: v for k, v in cache.items()}


def _run_cli(out: Path, model: str, endpoint: str) -> int:
    return main(
        ["eval", "run", "mcq", "--model", model, "--mcq-endpoint", endpoint, "--data", f"mcq={MCQ}",
         "--out", str(out), "--batch-size", "4"]
    )  # fmt: skip


def test_endpoint_scores_equal_the_hf_backend(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    model = str(tiny_causal_lm_path)
    hf = RunConfig(out_dir=tmp_path / "hf", model=model, data={"mcq": str(MCQ)}, batch_size=4)
    run_eval(["mcq"], None, hf)

    with FakeCompletionsServer(tiny_causal_lm_path, model_name=model) as server:
        url = server.base_url
        assert _run_cli(tmp_path / "api", model, url) == 0
        bodies = server.bodies
        api_results = load_results(tmp_path / "api" / "results.json")["tasks"]["mcq"]

        # the requests are the ones lm-eval's loglikelihood needs: token ids, echoed logprobs, one new token
        assert all(b["echo"] is True and b["logprobs"] == 1 and b["max_tokens"] == 1 for b in bodies)
        prompts = [p for b in bodies[1:] for p in b["prompt"]]  # bodies[0] is bimedix2's capability check
        assert len(prompts) == _n_options() and all(isinstance(t, int) for p in prompts for t in p)
        bos = server.tokenizer.bos_token_id
        assert all(p[0] == bos for p in prompts)  # the tokenizer's special tokens, as the hf backend adds them

        # rerun in the same folder: everything comes from the cache, only the capability check is sent
        assert _run_cli(tmp_path / "api", model, url) == 0
        assert len(server.bodies) == len(bodies) + 1

    assert api_results["lm_eval"]["model"] == "local-completions"
    assert api_results["lm_eval"]["endpoint"] == f"{url}/completions"
    _assert_same_scores(tmp_path / "hf", tmp_path / "api", _n_options())


def _assert_same_scores(hf_dir: Path, api_dir: Path, n_options: int) -> None:
    """Every option's log-likelihood (and greedy flag), every sample's and every cell's accuracy agree."""
    expected, got = _loglikelihoods(hf_dir), _loglikelihoods(api_dir)
    assert len(expected) == n_options and set(got) == set(expected)
    for key, (logprob, greedy) in expected.items():
        assert got[key][0] == pytest.approx(logprob, abs=1e-4)
        assert got[key][1] == greedy
    assert len({round(v[0], 3) for v in expected.values()}) > n_options // 2  # real, distinct scores
    hf_table = load_results(hf_dir / "results.json")["tasks"]["mcq"]["metrics"]
    api_table = load_results(api_dir / "results.json")["tasks"]["mcq"]["metrics"]
    assert set(api_table) == set(hf_table) == {"en", "ar", "bilingual"}
    for row, cells in hf_table.items():
        assert api_table[row] == pytest.approx(cells)
    per_sample = {(r["task"], r["doc_id"]): r["acc"] for r in _lines(hf_dir / "mcq" / "scored.jsonl")}
    assert {(r["task"], r["doc_id"]): r["acc"] for r in _lines(api_dir / "mcq" / "scored.jsonl")} == per_sample


@pytest.mark.integration
def test_endpoint_on_the_real_smollm2(smollm2_engine, tmp_path: Path) -> None:  # noqa: ANN001
    """SmolLM2-135M-Instruct: the loaded model through the hf backend vs the same weights behind the fake
    endpoint, with the tokenizer taken from the model bimedix2 loaded (the `engine` branch)."""
    from bimedix2.model.loader import embedded_default_dir

    engine = smollm2_engine
    name = "smollm2-135m-instruct"
    common = {"model": name, "data": {"mcq": str(MCQ)}, "batch_size": 4, "limit": 1}
    run_eval(["mcq"], engine, RunConfig(out_dir=tmp_path / "hf", **common))
    with FakeCompletionsServer(embedded_default_dir(), model_name=name) as server:
        cfg = RunConfig(out_dir=tmp_path / "api", mcq_endpoint=server.base_url, **common)
        run_eval(["mcq"], engine, cfg)
    n_options = sum(len(r["options"]) for f in sorted(MCQ.glob("*/*.jsonl")) for r in _lines(f)[:1])
    _assert_same_scores(tmp_path / "hf", tmp_path / "api", n_options)


def _endpoint_cfg(out: Path, model: str, endpoint: str) -> RunConfig:
    return RunConfig(out_dir=out, model=model, data={"mcq": str(MCQ)}, mcq_endpoint=endpoint, batch_size=4)


def test_endpoint_problems_give_clear_errors(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    model = str(tiny_causal_lm_path)
    with FakeCompletionsServer(tiny_causal_lm_path, model_name="another-model") as server:
        with pytest.raises(ConfigError, match="refused a scoring request.*HTTP 404"):
            run_eval(["mcq"], None, _endpoint_cfg(tmp_path / "a", model, server.base_url))
    with FakeCompletionsServer(tiny_causal_lm_path, model_name=model, with_logprobs=False) as server:
        with pytest.raises(ConfigError, match="does not return prompt logprobs"):
            run_eval(["mcq"], None, _endpoint_cfg(tmp_path / "b", model, server.base_url))
    with FakeOpenAIServer() as chat_only:  # chat completions only: /v1/completions is a 404
        with pytest.raises(ConfigError, match="HTTP 404"):
            run_eval(["mcq"], None, _endpoint_cfg(tmp_path / "c", model, chat_only.base_url))
    with pytest.raises(ConfigError, match="tokenizer"):
        run_eval(["mcq"], None, _endpoint_cfg(tmp_path / "d", "served-name-only", "http://127.0.0.1:9/v1"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(ConfigError, match="cannot reach"):
        run_eval(["mcq"], None, _endpoint_cfg(tmp_path / "e", model, f"http://127.0.0.1:{closed}/v1"))
