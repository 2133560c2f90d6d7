"""`--endpoint` generation writes finished samples off the event loop: while one write (and its fsync) is
under way, the other requests keep going out, and every finished sample is written before the run returns,
also when a later sample fails. (Writing from each request's coroutine once put one fsync per sample on
the event loop: benchmarks/bench_eval.py measured 2.2 s of a 4.4 s 500-sample run spent in fsync.)"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.eval.endpoint import EndpointError
from bimedix2.eval.results import SampleCache
from bimedix2.eval.runner import RunConfig, run_eval


def _vqa_rad(root: Path, n: int) -> Path:
    """n VQA-RAD-layout records on one image; question i reads "sample i: ..."."""
    (root / "VQA_RAD Image Folder").mkdir(parents=True)
    Image.new("RGB", (32, 24), (90, 120, 200)).save(root / "VQA_RAD Image Folder" / "img.jpg")
    records = [
        {
            "qid": i,
            "phrase_type": "test_freeform",
            "image_name": "img.jpg",
            "question": f"sample {i}: is it?",
            "answer": "yes",
            "answer_type": "CLOSED",
        }  # fmt: skip
        for i in range(n)
    ]
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(records), encoding="utf-8")
    return root


def _cfg(tmp_path: Path, url: str, n: int, concurrency: int = 2) -> RunConfig:
    return RunConfig(out_dir=tmp_path / "out", model="unused", data={"vqa-rad": str(_vqa_rad(tmp_path / "d", n))},
                     endpoint=url, endpoint_model="m", endpoint_concurrency=concurrency, bootstrap=0)  # fmt: skip


def test_requests_go_out_while_a_finished_sample_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bimedix2.llm_client import LLMClient

    writes: list[tuple[float, float]] = []
    starts: list[float] = []
    add_many, chat = SampleCache.add_many, LLMClient.chat

    def slow_add_many(self: SampleCache, records: list[dict]) -> None:
        began = time.monotonic()
        time.sleep(0.4)  # a slow disk: what one write (append + fsync) may take
        add_many(self, records)
        writes.append((began, time.monotonic()))

    async def timed_chat(self: LLMClient, *args: object, **kwargs: object) -> object:
        starts.append(time.monotonic())
        return await chat(self, *args, **kwargs)

    monkeypatch.setattr(SampleCache, "add_many", slow_add_many)
    monkeypatch.setattr(LLMClient, "chat", timed_chat)
    with FakeOpenAIServer(responder=lambda body: "yes", latency_s=0.05) as server:
        run_eval(["vqa-rad"], None, _cfg(tmp_path, server.base_url, 6))
        assert len(server.requests) == 6
    # a write blocking the event loop would let no request start meanwhile: here they do
    assert any(a < t < b for t in starts for a, b in writes), (starts, writes)
    lines = (tmp_path / "out" / "vqa-rad" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(x)["id"] for x in lines[1:]) == sorted(f"vqa-rad-{i}" for i in range(6))


def test_finished_samples_are_written_when_a_later_one_fails(tmp_path: Path) -> None:
    lock = threading.Lock()
    answered: list[int] = []

    def responder(body: dict) -> str:
        with lock:
            answered.append(1)
        return "yes"

    with FakeOpenAIServer(responder=responder) as server:
        server.fault_when(lambda body: "sample 5:" in json.dumps(body), "400", times=1)
        with pytest.raises(EndpointError, match=r"failed at sample vqa-rad-5"):
            run_eval(["vqa-rad"], None, _cfg(tmp_path, server.base_url, 6, concurrency=1))  # in order: 0-4 first
    lines = (tmp_path / "out" / "vqa-rad" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    written = {json.loads(x)["id"] for x in lines[1:]}
    assert len(answered) == 5 and written == {f"vqa-rad-{i}" for i in range(5)}  # every answered sample kept
