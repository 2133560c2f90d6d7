"""Doctor review of generated chats: a seeded, capped sample of a rewrite job goes to `bimedix2 review`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.cli import main
from bimedix2.data.io import iter_records, write_jsonl
from bimedix2.data.jobstore import JobStore
from bimedix2.data.review import RLE, review_session
from bimedix2.data.rewrite import OUTPUT, RewriteConfig, review_draw, run_rewrite
from bimedix2.data.schema import Record, Turn
from bimedix2.errors import ConfigError
from bimedix2.llm_client import LLMConfig

ARABIC_TURN = "خذ الباراسيتامول 500 mg مرتين يوميا"  # the model drifted into Arabic: a doctor should see it


def mcq_records(n: int) -> list[Record]:
    """English MCQ records in the builders' layout (last turn: 'The correct answer is X. Text')."""
    return [
        Record(
            id=f"mcq-{i}",
            conversations=(
                Turn("human", f"A patient with fever for {i + 2} days. Best next drug?\nA. Aspirin\nB. Drug {i}"),
                Turn("gpt", f"The correct answer is B. Drug {i}"),
            ),
            source="medqa",
            task="mcq",
            split="train",
        )
        for i in range(n)
    ]


def chat_responder(body: dict) -> str:
    user = json.loads(body["messages"][1]["content"])
    answer = user["correct_answer"].split(". ", 1)[1]
    return json.dumps(
        {
            "conversation": [
                {"from": "human", "value": "I have had a fever for days."},
                {"from": "gpt", "value": ARABIC_TURN},
                {"from": "human", "value": "What should I take?"},
                {"from": "gpt", "value": f"{answer} is the right choice here."},
            ]
        },
        ensure_ascii=False,
    )


def cfg(server: FakeOpenAIServer, **kw) -> RewriteConfig:
    llm = LLMConfig(base_url=server.base_url, model="fake", backoff_base_s=0.001, max_concurrency=4)
    return RewriteConfig(llm=llm, **kw)


def queued(out: Path) -> list[str]:
    with JobStore(out / "job.sqlite") as store:
        return [item.result.rec_id for item in store.items("review_reason = 'sampled'")]


def test_sample_is_seeded_capped_and_kept_on_resume(tmp_path: Path) -> None:
    recs = mcq_records(24)
    write_jsonl(recs, tmp_path / "in.jsonl")
    draws = {r.id: review_draw(r.id, 3) for r in recs}
    by_rate = {i for i, d in draws.items() if d < 0.5}
    assert 3 < len(by_rate) < 24, "the fixture must sample some records, not all"

    def run(out: str, server: FakeOpenAIServer, **kw) -> dict:
        return run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / out, cfg(server, **kw), progress=False)[1]

    with FakeOpenAIServer(chat_responder) as server:
        stats = run("a", server, review_sample_rate=0.5, seed=3)
        assert set(queued(tmp_path / "a")) == by_rate and stats["review"]["queued"] == len(by_rate)
        assert stats["written"] == 24  # sampled chats are exported while their review is pending
        # capped: the three lowest draws; another seed draws another sample
        stats = run("b", server, review_sample_rate=0.5, seed=3, review_sample_size=3)
        lowest = sorted(by_rate, key=draws.get)[:3]
        assert sorted(queued(tmp_path / "b")) == sorted(lowest) and stats["review"]["pending"] == 3
        run("c", server, review_sample_rate=0.5, seed=4)
        assert set(queued(tmp_path / "c")) != by_rate
        paid = server.completed
        # resume: nothing paid again, same queue; a larger cap queues the next lowest draws
        run("b", server, review_sample_rate=0.5, seed=3, review_sample_size=3)
        assert server.completed == paid and sorted(queued(tmp_path / "b")) == sorted(lowest)
        run("b", server, review_sample_rate=0.5, seed=3, review_sample_size=5)
        assert sorted(queued(tmp_path / "b")) == sorted(sorted(by_rate, key=draws.get)[:5])
        assert server.completed == paid


def test_doctor_review_of_generated_chats_is_honoured_by_the_export(tmp_path: Path, capsys) -> None:
    write_jsonl(mcq_records(6), tmp_path / "in.jsonl")
    out = tmp_path / "job"
    with FakeOpenAIServer(chat_responder) as server:
        args = ["data", "rewrite", "mcq-dialogue", str(tmp_path / "in.jsonl"), str(out), "--base-url",
                server.base_url, "--model", "fake", "--set", "review_sample_rate=1.0", "--set",
                "review_sample_size=4", "--no-progress"]  # fmt: skip
        assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["review"] == {"queued": 4, "decisions": {}, "pending": 4}
    assert main(["review", str(out), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "4 pending" in listed and "first=" not in listed  # a rewrite job has no translation scores
    with JobStore(out / "job.sqlite") as store:
        pending = [item.result.rec_id for item in store.pending_review()]
    # accept, edit turn 1 (a blank-only edit is refused first), reject, then quit before the fourth
    edited = "Paracetamol (باراسيتامول) 500 mg twice a day, and drink water."
    script = io.StringIO("a\ne\n\n   \n\n\ne\n\n" + edited + "\n\n\nr\nq\n")
    screen = io.StringIO()
    summary = review_session(out, inp=script, out=screen)
    assert (summary.accepted, summary.edited, summary.rejected) == (1, 1, 1)
    shown = screen.getvalue()
    assert "--- source turn 0 (human)\nA patient with fever" in shown
    assert f"--- generated turn 1 (gpt)\n{RLE}{ARABIC_TURN}" in shown  # Arabic shown right-to-left
    assert "not saved: turn 1 is empty" in shown
    exported = {r.provenance["rewritten_from"]: r for r in iter_records(out / OUTPUT)}
    accepted, edit, rejected, left = pending
    assert rejected not in exported and len(exported) == 5
    assert exported[accepted].provenance["rewrite_review"] == "accepted"
    assert exported[edit].conversations[1].value == edited  # stored exactly as typed
    assert exported[edit].conversations[0].value == "I have had a fever for days."  # kept
    assert exported[edit].provenance["rewrite_review"] == "edited"
    assert exported[left].provenance["rewrite_review"] == "pending"
    unsampled = set(exported) - set(pending)
    assert unsampled and all(exported[i].provenance["rewrite_review"] == "not sampled" for i in unsampled)
    # a rerun keeps the decisions (and the export honours them)
    with FakeOpenAIServer(chat_responder) as server:
        c = cfg(server, review_sample_rate=1.0, review_sample_size=4)
        _, stats = run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", out, c, progress=False)
        assert server.completed == 0
    assert stats["review"] == {"queued": 4, "decisions": {"accepted": 1, "edited": 1, "rejected": 1}, "pending": 1}
    assert rejected not in {r.provenance["rewritten_from"] for r in iter_records(out / OUTPUT)}


def test_a_folder_from_before_review_sampling_resumes_with_rate_zero(tmp_path: Path) -> None:
    write_jsonl(mcq_records(2), tmp_path / "in.jsonl")
    with FakeOpenAIServer(chat_responder) as server:
        # review_sample_rate 0 and the toolkit prompt pin exactly the settings such a folder has
        no_sample = cfg(server, review_sample_rate=0)
        run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / "o", no_sample, progress=False)
        with JobStore(tmp_path / "o" / "job.sqlite") as store:
            pinned = json.loads(store.sql("SELECT value FROM meta WHERE key = 'settings'")[0][0])
        assert set(pinned) == {"kind", "model", "min_turns", "max_turns", "json_attempts", "temperature"}
        with pytest.raises(ConfigError, match=r"changed: \['review_sample_rate', 'seed'\]"):
            run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / "o", cfg(server), progress=False)
        run_rewrite("mcq-dialogue", tmp_path / "in.jsonl", tmp_path / "o", no_sample, progress=False)
        assert server.completed == 2
