"""`eval run --endpoint`: generation through an OpenAI-compatible endpoint (the fake one on 127.0.0.1).

What is sent (the exact messages, images as data: URLs of the padded image, the task's decoding
settings), what results.json records (the endpoint without credentials, remote generation, never
the key), resuming after a failed request or a kill (only what is missing is asked again) and the
clear errors."""

from __future__ import annotations

import base64
import io
import itertools
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.cli import build_parser
from bimedix2.commands.eval import run_options
from bimedix2.errors import ConfigError
from bimedix2.eval.endpoint import EndpointError, chat_messages, clean_url, request_params
from bimedix2.eval.kinds import TaskRun, get_kind
from bimedix2.eval.runner import RunConfig, load_results, run_eval
from bimedix2.eval.tasks import load_task
from bimedix2.images import load_image, pad_to_square
from bimedix2.types import GenParams, ImageRef, Message

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
DATA = {"vqa-rad": str(FIX / "vqa-rad"), "uphill": str(FIX / "uphill" / "claims.jsonl")}
KEY_ENV = "EVAL_ENDPOINT_TEST_KEY"


def _cfg(out: Path, url: str, **kw) -> RunConfig:  # noqa: ANN003
    base = {"endpoint_key_env": KEY_ENV, "bootstrap": 0}
    return RunConfig(out_dir=out, model="unused", data=DATA, endpoint=url, endpoint_model="remote-m", **{**base, **kw})


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _expected_messages(task: str, cfg: RunConfig) -> dict[str, list[dict]]:
    """{sample id: chat messages} as the in-process path would render them for the run's protocol."""
    spec = load_task(task).for_protocol(cfg.protocol)
    run = TaskRun(spec, cfg)
    kind = get_kind(spec.kind)
    steer = run.gen_params().steer_language
    return {s.id: chat_messages(kind.prompt(run, s), steer) for s in kind.read(run)}


def _png_pixels(url: str) -> np.ndarray:
    header, _, payload = url.partition(",")
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def test_vqa_sends_the_exact_messages_with_data_urls_and_the_paper_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "s3cret-key")
    with FakeOpenAIServer(responder=lambda body: "yes") as server:
        cfg = _cfg(tmp_path, server.base_url, endpoint_concurrency=2)
        results = load_results(run_eval(["vqa-rad"], None, cfg))
        requests = server.requests
    expected = _expected_messages("vqa-rad", cfg)
    assert len(requests) == len(expected) == 3
    sent = [r.body["messages"] for r in requests]
    assert sorted(map(json.dumps, sent)) == sorted(map(json.dumps, expected.values()))  # the exact messages
    for body in (r.body for r in requests):
        # the paper protocol's VQA settings: the released defaults (temperature 0.1 > 0.001: sampled), seed 0
        assert {k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed")} == {
            "temperature": 0.1,
            "top_p": 1.0,
            "max_tokens": 1024,
            "seed": 0,
        }
        assert body["model"] == "remote-m"
    assert {r.authorization for r in requests} == {"Bearer s3cret-key"}
    # each image is the toolkit's own decoded, square-padded image, as PNG
    first = sent[0][0]
    image_part, text_part = first["content"][0], first["content"][-1]
    assert image_part["type"] == "image_url" and text_part["type"] == "text"
    samples = get_kind("vqa").read(TaskRun(load_task("vqa-rad").for_protocol("paper"), cfg))
    by_text = {s.text: s for s in samples}
    sample = next(s for t, s in by_text.items() if t in text_part["text"])
    want = np.asarray(pad_to_square(load_image(sample.images[0])))
    got = _png_pixels(image_part["image_url"]["url"])
    assert got.shape == want.shape and got.shape[0] == got.shape[1] and np.array_equal(got, want)
    # results.json: the endpoint (no credentials) and model are the identity; generation was remote
    clean = cfg.endpoint
    assert results["model"] == f"remote-m @ {clean}" and results["label"] == "remote-m"
    assert results["generation"] == {
        "remote": True,
        "endpoint": clean,
        "model": "remote-m",
        "api_key_env": KEY_ENV,
        "concurrency": 2,
    }
    entry = results["tasks"]["vqa-rad"]
    assert entry["generation"]["request"] == {"temperature": 0.1, "top_p": 1.0, "max_tokens": 1024, "seed": 0}
    assert results["config"]["vqa-rad"]["run"]["endpoint"] == clean
    assert {r["prediction"] for r in _lines(tmp_path / "vqa-rad" / "scored.jsonl")} == {"yes"}
    written = "".join(p.read_text(encoding="utf-8", errors="replace") for p in tmp_path.rglob("*.json*"))
    assert "s3cret-key" not in written


def test_credentials_in_the_url_are_never_written(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "yes") as server:
        url = server.base_url.replace("http://", "http://user:pw@")
        results = load_results(run_eval(["vqa-rad"], None, _cfg(tmp_path, url)))
        assert {r.authorization for r in server.requests} == {"Basic dXNlcjpwdw=="}  # httpx sends them
        assert results["model"] == f"remote-m @ {server.base_url}"
    written = "".join(p.read_text(encoding="utf-8", errors="replace") for p in tmp_path.rglob("*.json*"))
    assert "user:pw" not in written and "user" not in json.dumps(results)


def test_toolkit_protocol_is_greedy_and_steering_is_done_in_the_messages(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "the answer") as server:
        cfg = _cfg(tmp_path, server.base_url, protocol="toolkit", judge_url=server.base_url, judge_model="j")
        spec = load_task("uphill").for_protocol("toolkit")
        params = TaskRun(spec, cfg).gen_params()
        run_eval(["uphill"], None, cfg)
        asked = [r.body for r in server.requests if r.body["model"] == "remote-m"]
    assert params.steer_language and not params.sampling  # uphill's toolkit settings
    assert asked and all((b["temperature"], b["max_tokens"]) == (0.0, 256) for b in asked)
    # the language hint is in the text, as the template input has it: the server is never asked to steer
    assert all(b["messages"][-1]["content"].endswith(("Answer in English.", "الفصحى.")) for b in asked)
    expected = _expected_messages("uphill", cfg)
    assert sorted(json.dumps(b["messages"]) for b in asked) == sorted(json.dumps(m) for m in expected.values())
    assert all("steer_language" not in b for b in asked)  # no non-standard fields


def test_request_params_follow_the_protocol_rules() -> None:
    # the released rule: temperature 0.0005 is greedy there, so 0 is sent
    greedy = GenParams(max_new_tokens=9, temperature=0.0005, do_sample=False, seed=3, stop=("\n\n",))
    assert request_params(greedy) == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 9, "seed": 3, "stop": ["\n\n"]}
    assert request_params(GenParams(temperature=0.7, top_p=0.9)) == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 1024,
    }


def test_messages_put_images_first_and_keep_other_turns(png_path: Path) -> None:
    conv = [Message("system", "Be brief."), Message("user", "What is shown?", (ImageRef(png_path), ImageRef(png_path)))]
    out = chat_messages(conv)
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert [p["type"] for p in out[1]["content"]] == ["image_url", "image_url", "text"]
    assert _png_pixels(out[1]["content"][0]["image_url"]["url"]).shape == (60, 60, 3)  # 40x60 padded to a square


def test_clean_url_drops_credentials() -> None:
    assert clean_url("https://u:p@host:8443/v1/?api_key=x#f") == "https://host:8443/v1"
    assert clean_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_a_failed_request_keeps_the_finished_samples_and_the_rerun_asks_only_the_rest(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "no") as server:
        cfg = _cfg(tmp_path, server.base_url, endpoint_concurrency=1)
        # the second request is refused (a 400 is not retried): the run stops there
        seen = itertools.count(1)
        server.fault_when(lambda body: next(seen) == 2, "400")
        with pytest.raises(EndpointError, match=r"failed at sample vqa-rad-\d.*HTTP 400.*1 of 3 samples are finished"):
            run_eval(["vqa-rad"], None, cfg)
        finished = [r["id"] for r in _lines(tmp_path / "vqa-rad" / "predictions.jsonl")[1:]]
        assert len(finished) == 1
        before = len(server.requests)
        load_results(run_eval(["vqa-rad"], None, cfg))
        again = server.requests[before:]
    assert len(again) == 2 and all(r.outcome == "ok" for r in again)  # only the two missing samples
    assert len(_lines(tmp_path / "vqa-rad" / "predictions.jsonl")) == 1 + 3


def test_transient_failures_are_retried(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "yes") as server:
        server.inject("503", "429", "drop")
        results = load_results(run_eval(["vqa-rad"], None, _cfg(tmp_path, server.base_url, endpoint_concurrency=1)))
        outcomes = [r.outcome for r in server.requests]
    assert results["tasks"]["vqa-rad"]["n"] == 3
    assert outcomes.count("ok") == 3 and {"503", "429", "drop"} <= set(outcomes)


def test_a_killed_run_resumes_from_its_caches(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "yes") as server:
        cfg = _cfg(tmp_path, server.base_url)
        run_eval(["vqa-rad"], None, cfg)
        assert server.completed == 3
        cache = tmp_path / "vqa-rad" / "predictions.jsonl"
        lines = cache.read_text(encoding="utf-8").splitlines()
        # killed while writing: the last sample torn, one lost; every paid call is in the SQLite cache
        cache.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10], encoding="utf-8")
        run_eval(["vqa-rad"], None, cfg)
        assert server.completed == 3  # nothing paid twice
        assert len(_lines(cache)) == 1 + 3
        # killed before the calls were committed: only the missing samples are asked
        (tmp_path / "vqa-rad" / "generation_cache.sqlite").unlink()
        cache.write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")
        run_eval(["vqa-rad"], None, cfg)
        assert server.completed == 3 + 2


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "yes", latency_s=0.2) as server:
        run_eval(["vqa-rad"], None, _cfg(tmp_path, server.base_url, endpoint_concurrency=2))
        assert 1 <= server.peak_inflight <= 2


def test_an_unreachable_endpoint_and_a_refused_key_are_clear_errors(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    with pytest.raises(EndpointError, match=rf"cannot reach the generation endpoint http://127.0.0.1:{port}/v1"):
        run_eval(["vqa-rad"], None, _cfg(tmp_path / "a", f"http://127.0.0.1:{port}/v1"))
    with FakeOpenAIServer() as server:
        server.inject("401")
        with pytest.raises(EndpointError, match=rf"HTTP 401 \(is \${KEY_ENV} set\?\)"):
            run_eval(["vqa-rad"], None, _cfg(tmp_path / "b", server.base_url, endpoint_concurrency=1))


def test_results_of_another_endpoint_model_are_not_mixed(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda body: "yes") as server:
        run_eval(["vqa-rad"], None, _cfg(tmp_path, server.base_url))
        other = RunConfig(out_dir=tmp_path, model="unused", data=DATA, endpoint=server.base_url, endpoint_model="x")
        with pytest.raises(Exception, match="holds results of model 'remote-m @"):
            run_eval(["vqa-rad"], None, other)


def _opts(argv: list[str]):  # noqa: ANN202
    return run_options(build_parser().parse_args(["eval", "run", *argv]))


def test_cli_options() -> None:
    got = _opts(["vqa-rad", "--out", "o", "--endpoint", "http://h:8000/v1", "--endpoint-model", "m"]).run_config()
    assert (got.endpoint, got.endpoint_model, got.endpoint_key_env, got.endpoint_concurrency) == (
        "http://h:8000/v1",
        "m",
        "BIMEDIX2_ENDPOINT_KEY",
        8,
    )
    assert got.resolved_mcq_mode() == "generative" and got.remote
    assert not get_kind("vqa").needs_engine(got)
    with pytest.raises(ConfigError, match="--endpoint needs --endpoint-model"):
        _opts(["vqa-rad", "--out", "o", "--endpoint", "http://h/v1"])
    with pytest.raises(ConfigError, match="http:// or https://"):
        _opts(["vqa-rad", "--out", "o", "--endpoint", "h:8000", "--endpoint-model", "m"])
    with pytest.raises(ConfigError, match="--endpoint-concurrency must be at least 1"):
        _opts(
            [
                "vqa-rad",
                "--out",
                "o",
                "--endpoint",
                "http://h/v1",
                "--endpoint-model",
                "m",
                "--endpoint-concurrency",
                "0",
            ]
        )
    # no flag takes the key itself; a key given by mistake (argparse reads --endpoint-key as --endpoint-key-env)
    # is refused without being echoed
    mistaken = ["vqa-rad", "--out", "o", "--endpoint", "http://h/v1", "--endpoint-model", "m", "--endpoint-key"]
    with pytest.raises(ConfigError, match="not a variable name") as err:
        _opts([*mistaken, "sk-live-123"])
    assert "sk-live-123" not in str(err.value)
    with pytest.raises(ConfigError, match="is not set") as err:
        _opts([*mistaken, "abcdef0123456789"])
    assert "abcdef0123456789" not in str(err.value)
