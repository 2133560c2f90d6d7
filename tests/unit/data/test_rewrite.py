"""LLM rewriting jobs (VQA detail, caption -> conversation, MCQ -> dialogue) on the fake endpoint."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.cli import main
from bimedix2.data.io import iter_records, write_jsonl
from bimedix2.data.rewrite import (
    CAPTION_SYSTEM,
    CONVERSATION_CONTRACT,
    MCQ_SYSTEM,
    VQA_DETAIL_SYSTEM,
    RewriteConfig,
    run_rewrite,
)
from bimedix2.data.schema import validate_record
from bimedix2.data.sources import iter_source
from bimedix2.data.translate import prompts_v1
from bimedix2.errors import ConfigError
from bimedix2.llm_client import LLMConfig

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "data"


def responder(body: dict) -> str:
    system, user = body["messages"][0]["content"], json.loads(body["messages"][1]["content"])
    if system == VQA_DETAIL_SYSTEM:
        short = user["short_answer"]
        return json.dumps({"answer": f"{short}. This follows from the anatomy asked about in: {user['question']}"})
    if system == CAPTION_SYSTEM:
        return json.dumps({"conversation": [
            {"from": "human", "value": "What kind of image is this?"},
            {"from": "gpt", "value": "It is an axial CT of the chest."},
            {"from": "human", "value": "Is there a nodule?"},
            {"from": "gpt", "value": f"Yes: {user['caption']}"},
        ]})  # fmt: skip
    if system == MCQ_SYSTEM:
        answer = user["correct_answer"].split(". ", 1)[1].split("\n")[0]
        return json.dumps({"conversation": [
            {"from": "human", "value": "Doctor, it burns when I pass urine."},
            {"from": "gpt", "value": "Are you pregnant, and any fever?"},
            {"from": "human", "value": "No to both."},
            {"from": "gpt", "value": f"Then {answer} is the best choice for you."},
        ]})  # fmt: skip
    return "?"


def cfg(server: FakeOpenAIServer, concurrency: int = 4) -> RewriteConfig:
    llm = LLMConfig(base_url=server.base_url, model="fake", backoff_base_s=0.001, max_concurrency=concurrency)
    return RewriteConfig(llm=llm)


def test_vqa_detail_keeps_the_original_answer(tmp_path: Path) -> None:
    write_jsonl(iter_source("vqa-rad", FIX / "vqa-rad"), tmp_path / "in.jsonl")
    with FakeOpenAIServer(responder) as server:
        # the first record's first reply drops the original answer: the check re-asks
        server.script(json.dumps({"answer": "Probably not, hard to say."}))
        c = cfg(server, concurrency=1)
        _, stats = run_rewrite("vqa-detail", tmp_path / "in.jsonl", tmp_path / "out", c, progress=False)
        assert server.completed == 3
    out = list(iter_records(tmp_path / "out" / "rewritten.jsonl"))
    assert stats["written"] == 2 and stats["failed"] == 0
    assert out[0].id == "vqa-rad-1-vqa-detail" and out[0].conversations[1].value.startswith("Yes. ")
    assert out[1].conversations[1].value.startswith("2. ")
    assert out[0].conversations[0] == next(iter_records(tmp_path / "in.jsonl")).conversations[0]
    assert all(validate_record(r) == [] for r in out)


def test_caption_to_conversation_puts_the_image_token_first(tmp_path: Path) -> None:
    write_jsonl(iter_source("llava-med-alignment", FIX / "llava-med"), tmp_path / "in.jsonl")
    with FakeOpenAIServer(responder) as server:
        _, stats = run_rewrite(
            "caption-conversation", tmp_path / "in.jsonl", tmp_path / "o", cfg(server), progress=False
        )
    (rec,) = iter_records(tmp_path / "o" / "rewritten.jsonl")
    assert rec.conversations[0].value == "<image>\nWhat kind of image is this?"
    assert len(rec.conversations) == 4 and rec.task == "conversation" and validate_record(rec) == []
    assert "12 mm nodule" in rec.conversations[-1].value


def test_mcq_dialogue_must_reach_the_answer_else_recorded_failure(tmp_path: Path) -> None:
    write_jsonl(iter_source("medqa", FIX / "medqa"), tmp_path / "in.jsonl")
    wrong = json.dumps(
        {
            "conversation": [
                {"from": "human", "value": "hi"},
                {"from": "gpt", "value": "Take rest."},
                {"from": "human", "value": "ok"},
                {"from": "gpt", "value": "Bye."},
            ]
        }
    )
    with FakeOpenAIServer(responder) as server:
        server.script(wrong, "malformed", wrong)  # record 1: three bad replies -> failed
        one_at_a_time = cfg(server, concurrency=1)  # so the scripted replies go to the first record
        _, stats = run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / "o", one_at_a_time, progress=False)
        calls = len(server.requests)
    assert stats["failed"] == 1 and stats["written"] == 1
    (rec,) = iter_records(tmp_path / "o" / "rewritten.jsonl")
    assert "Vitamin C" in rec.conversations[-1].value
    # rerun: finished and failed records are not retried, nothing is paid again
    with FakeOpenAIServer(responder) as server2:
        run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / "o", cfg(server2, 1), progress=False)
        assert server2.completed == 0
    assert calls == 4


def test_bimedix_v1_chat_prompt_is_refused_before_any_work_naming_the_missing_table(tmp_path: Path, capsys) -> None:
    write_jsonl(iter_source("medqa", FIX / "medqa"), tmp_path / "in.jsonl")
    with FakeOpenAIServer(responder) as server:
        base = ["data", "rewrite", "mcq-dialogue", str(tmp_path / "in.jsonl"), str(tmp_path / "o"),
                "--base-url", server.base_url, "--model", "fake", "--no-progress", "--set"]  # fmt: skip
        assert main([*base, "prompt=bimedix-v1"]) == 2
        err = capsys.readouterr().err
        assert "prompt: bimedix-v1 is not available" in err and "Table 10" in err and "arXiv:2402.13253" in err
        assert main([*base, "prompt=paper"]) == 2
        assert "unknown prompt set 'paper'; available: toolkit, bimedix-v1" in capsys.readouterr().err
        assert server.requests == [] and not (tmp_path / "o" / "job.sqlite").exists()


def test_bimedix_v1_chat_prompt_once_sourced_is_sent_recorded_and_pinned(tmp_path: Path, monkeypatch) -> None:
    # stands in for Table 10's text (not sourced): the option's mechanism, not the paper's words, is tested
    stand_in = "STAND-IN FOR BIMEDIX V1 TABLE 10"
    monkeypatch.setattr(prompts_v1, "MCQ_CHAT", replace(prompts_v1.MCQ_CHAT, text=stand_in))
    write_jsonl(iter_source("medqa", FIX / "medqa"), tmp_path / "in.jsonl")
    v1_system = f"{stand_in}\n\n{CONVERSATION_CONTRACT}"

    def v1_responder(body: dict) -> str:
        assert body["messages"][0]["content"] == v1_system
        return responder({**body, "messages": [{"role": "system", "content": MCQ_SYSTEM}, *body["messages"][1:]]})

    with FakeOpenAIServer(v1_responder) as server:
        c = replace(cfg(server), prompt="bimedix-v1")
        _, stats = run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / "o", c, progress=False)
        assert stats["written"] == 2 and server.completed == 2
        with pytest.raises(ConfigError, match="mcq-dialogue only"):
            run_rewrite("vqa-detail", tmp_path / "in.jsonl", tmp_path / "v", c, progress=False)
        with pytest.raises(ConfigError, match=r"changed: \['prompt'\]"):
            run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / "o", cfg(server), progress=False)
    assert "prompt: bimedix-v1" in (tmp_path / "o" / "config.yaml").read_text()
    assert {r.provenance["rewrite_prompt"] for r in iter_records(tmp_path / "o" / "rewritten.jsonl")} == {"bimedix-v1"}
