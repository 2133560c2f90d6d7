"""`bimedix2 data validate`, `translate run/stats/export` and the terminal `review` session."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.translation_responder import translation_responder

from bimedix2.cli import main
from bimedix2.data.io import iter_records, write_jsonl
from bimedix2.data.jobstore import JobStore
from bimedix2.data.review import RLE, display, review_session
from bimedix2.data.schema import Record, Turn
from bimedix2.data.translate.pipeline import JOB_DB, OUTPUT

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "data"


def test_validate_command_reports_lines_and_ids(tmp_path: Path, capsys) -> None:
    path = tmp_path / "d.jsonl"
    good = {"id": "g", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path.write_text(
        json.dumps(good) + "\n{bad\n" + json.dumps({**good, "id": "x", "split": "dev"}) + "\n", encoding="utf-8"
    )
    assert main(["data", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "line 2 (id ?): not valid JSON" in out
    assert "line 3 (id x): split 'dev' is not one of" in out
    assert "3 records, 1 valid, 2 bad record(s)" in out
    assert main(["data", "validate", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["bad_records"] == 2


def test_build_and_convert_commands(tmp_path: Path, capsys) -> None:
    assert main(["data", "build", "slake", str(FIX / "slake"), str(tmp_path / "s.jsonl")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 3 and report["skipped"] == {"not English": 1, "missing image": 1}
    assert main(["data", "convert", str(tmp_path / "s.jsonl"), str(tmp_path / "s.parquet")]) == 0
    assert main(["data", "validate", str(tmp_path / "s.jsonl"), "--image-root", str(FIX / "slake")]) == 0
    assert len(list(iter_records(tmp_path / "s.parquet"))) == 3


def test_errors_are_clean(tmp_path: Path, capsys) -> None:
    assert main(["translate", "run", str(tmp_path / "none.jsonl"), str(tmp_path / "o")]) == 2
    assert "no LLM endpoint" in capsys.readouterr().err
    assert main(["review", str(tmp_path)]) == 2
    assert "no translation or rewrite job here" in capsys.readouterr().err


def make_job(tmp_path: Path) -> Path:
    recs = [
        Record(
            id=f"r{i}",
            conversations=(Turn("human", f"<image>\nIs lesion {i} of {i + 4} mm benign?"), Turn("gpt", f"Yes, {i}.")),
            images=("a.png",),
            task="vqa",
            split="test",
        )
        for i in range(12)
    ]
    write_jsonl(recs, tmp_path / "in.jsonl")
    out = tmp_path / "job"
    with FakeOpenAIServer(translation_responder) as server:
        args = ["translate", "run", str(tmp_path / "in.jsonl"), str(out), "--base-url", server.base_url,
                "--model", "fake", "--set", "max_rounds=1", "--set", "review_sample_rate=0.2",
                "--no-progress"]  # fmt: skip
        assert main(args) == 0
    return out


def test_translate_cli_then_review_accept_edit_reject(tmp_path: Path, capsys) -> None:
    out = make_job(tmp_path)
    printed = capsys.readouterr().out
    assert "below threshold at first score:" in printed and "Research use only" in printed
    with JobStore(out / JOB_DB) as store:
        pending = list(store.pending_review())
    assert len(pending) >= 3, "the fixture must queue several records"
    before = {r.id for r in iter_records(out / OUTPUT)}
    edited_text = "<image>\nهل الآفة حميدة؟ (تمت المراجعة)"
    # first: accept, second: edit turn 0 (keep turn 1), third: edit dropping <image> (refused), then reject; quit
    typed = edited_text.replace("\n", "\\n")  # a typed backslash-n is a newline
    script = io.StringIO("a\ne\n" + typed + "\n\ne\nبدون صورة\n\nr\nq\n")
    screen = io.StringIO()
    summary = review_session(out, inp=script, out=screen)
    assert (summary.accepted, summary.edited, summary.rejected) == (1, 1, 1)
    assert "not saved: turn 0 must keep its <image> token(s)" in screen.getvalue()
    assert "EN: <image>" in screen.getvalue() and RLE in screen.getvalue()
    exported = {r.provenance["translated_from"]: r for r in iter_records(out / OUTPUT)}
    a, e, r = (p.result for p in pending[:3])
    assert a.rec_id in exported and exported[a.rec_id].provenance["translation"]["review"] == "accepted"
    assert exported[e.rec_id].conversations[0].value == edited_text  # stored exactly as typed
    assert exported[e.rec_id].provenance["translation"]["review"] == "edited"
    assert r.rec_id not in exported
    assert len(exported) >= len(before) - 1
    # stats and the pending list reflect the decisions
    assert main(["translate", "stats", str(out)]) == 0
    assert "'accepted': 1" in capsys.readouterr().out
    assert main(["review", str(out), "--list"]) == 0
    assert f"{len(pending) - 3} pending" in capsys.readouterr().out
    assert main(["translate", "export", str(out), "--to", str(tmp_path / "final.jsonl")]) == 0
    assert (tmp_path / "final.jsonl").read_bytes() == (out / OUTPUT).read_bytes()


def test_display_marks_only_arabic_for_rtl() -> None:
    assert display("plain English") == "plain English"
    assert display("سطر\nآخر") == f"{RLE}سطر\u202c\n{RLE}آخر\u202c"


@pytest.mark.parametrize("answer", ["q\n", ""])
def test_quitting_or_eof_keeps_the_queue(tmp_path: Path, answer: str) -> None:
    out = make_job(tmp_path)
    with JobStore(out / JOB_DB) as store:
        n = len(list(store.pending_review()))
    summary = review_session(out, inp=io.StringIO(answer), out=io.StringIO())
    assert summary.accepted == summary.rejected == 0
    with JobStore(out / JOB_DB) as store:
        assert len(list(store.pending_review())) == n
