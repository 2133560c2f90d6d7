"""Translate-score-refine-review pipeline against the real-HTTP fake endpoint."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.translation_responder import base_score, translation_responder

from bimedix2.config import load_config
from bimedix2.data.io import iter_records, validate_file, write_jsonl
from bimedix2.data.jobstore import JobStore
from bimedix2.data.schema import Record, Turn
from bimedix2.data.translate import prompts_v1
from bimedix2.data.translate.pipeline import (
    JOB_DB,
    OUTPUT,
    TranslateConfig,
    missing_numbers,
    run_translation,
    sampled_for_review,
)
from bimedix2.data.translate.prompts import SCORE_CONTRACT, SCORE_SYSTEM, TRANSLATE_CONTRACT, TRANSLATE_SYSTEM
from bimedix2.errors import ConfigError
from bimedix2.llm_client import LLMConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "data"


def english_records(n: int) -> list[Record]:
    out = []
    for i in range(n):
        question = f"<image>\nCase {i}: is the {i * 3} mm nodule in the left lung benign?"
        out.append(
            Record(
                id=f"rec-{i}",
                conversations=(
                    Turn("human", question),
                    Turn("gpt", f"It is likely benign; give ibuprofen {200 + i} mg and review in {i + 2} weeks."),
                ),
                images=("imgs/x.png",),
                source="slake",
                task="vqa",
                split="test" if i % 2 else "train",
            )
        )
    return out


def config(server: FakeOpenAIServer, **kw) -> TranslateConfig:
    llm = LLMConfig(base_url=server.base_url, model="fake", max_concurrency=4, backoff_base_s=0.001)
    return TranslateConfig(llm=llm, **kw)


@pytest.fixture()
def server(repair_aware):
    with FakeOpenAIServer(repair_aware(translation_responder)) as s:
        yield s


def expected_rounds(record: Record, threshold: int, max_rounds: int) -> tuple[int, int, int]:
    base = base_score("".join(t.value for t in record.conversations))
    rounds = 0
    while base + 12 * rounds < threshold and rounds < max_rounds:
        rounds += 1
    return base, rounds, min(100, base + 12 * rounds)


def test_translation_job_end_to_end(server: FakeOpenAIServer, tmp_path: Path) -> None:
    records = english_records(24)
    write_jsonl(records, tmp_path / "in.jsonl")
    cfg = config(server, review_sample_rate=0.25)
    summary, stats = run_translation(tmp_path / "in.jsonl", tmp_path / "job", cfg, progress=False)
    assert summary.processed_now == 24
    exported = list(iter_records(tmp_path / "job" / OUTPUT))
    by_id = {r.provenance["translated_from"]: r for r in exported}
    expected_calls = 0
    below = recovered = humans = 0
    total_rounds = 0
    for rec in records:
        thr = 75 if rec.split == "train" else 85
        base, rounds, final = expected_rounds(rec, thr, 3)
        expected_calls += 2 + 2 * rounds
        total_rounds += rounds
        below += base < thr
        recovered += base < thr <= final
        low = final < thr
        sampled = not low and sampled_for_review(rec.id, 0.25, 0)
        humans += low or sampled
        if low:
            assert rec.id not in by_id  # waits for a reviewer
            continue
        out = by_id[rec.id]
        assert out.id == rec.id + "-ar" and out.language == "ar" and out.images == rec.images
        info = out.provenance["translation"]
        assert (info["first_score"], info["final_score"], info["refinement_rounds"]) == (base, final, rounds)
        assert info["review"] == ("pending" if sampled else "not sampled")
        assert out.conversations[0].value.startswith("<image>\n")
        assert missing_numbers([t.value for t in rec.conversations], [t.value for t in out.conversations]) == []
    assert server.completed == expected_calls
    assert stats["records_translated"] == 24
    assert stats["share_below_threshold_at_first"] == round(below / 24, 4)
    assert stats["share_recovered_of_below"] == round(recovered / below, 4)
    assert stats["mean_refinement_rounds"] == round(total_rounds / 24, 4)
    assert stats["share_sent_to_humans"] == round(humans / 24, 4)
    assert 0 < below < 24 and 0 < recovered < below  # the fixture exercises every branch
    assert validate_file(tmp_path / "job" / OUTPUT).ok
    assert (tmp_path / "job" / "config.yaml").is_file()
    assert json.loads((tmp_path / "job" / "stats.json").read_text())["records_translated"] == 24

    # rerun: nothing left to do, nothing paid again, identical output bytes
    before = (tmp_path / "job" / OUTPUT).read_bytes()
    summary2, _ = run_translation(tmp_path / "in.jsonl", tmp_path / "job", cfg, progress=False)
    assert summary2.processed_now == 0 and server.completed == expected_calls
    assert (tmp_path / "job" / OUTPUT).read_bytes() == before


def test_arabic_output_is_stored_byte_for_byte(tmp_path: Path) -> None:
    # diacritics, Arabic-Indic digits and presentation forms must come back exactly as sent
    weird = "إِنَّ الجرعةَ ٥٠٠ ملغ ﻻ تُعطى <image>"

    def responder(body):
        system = body["messages"][0]["content"]
        if system == TRANSLATE_SYSTEM:
            return json.dumps({"turns": [weird, "نعم، ٥٠٠ ملغ."]}, ensure_ascii=False)
        return json.dumps({"score": 95, "issues": []})

    rec = Record(
        id="a", conversations=(Turn("human", "<image>\nGive 500 mg?"), Turn("gpt", "Yes, 500 mg.")),
        images=("x.png",), task="vqa",
    )  # fmt: skip
    write_jsonl([rec], tmp_path / "in.jsonl")
    with FakeOpenAIServer(responder) as server:
        run_translation(tmp_path / "in.jsonl", tmp_path / "job", config(server, review_sample_rate=0), progress=False)
    out = (tmp_path / "job" / OUTPUT).read_bytes()
    assert weird.encode("utf-8") in out and "نعم، ٥٠٠ ملغ.".encode() in out


def test_missing_numbers_force_refinement(tmp_path: Path) -> None:
    calls = {"translate": 0}

    def responder(body):
        system = body["messages"][0]["content"]
        if system == TRANSLATE_SYSTEM:
            calls["translate"] += 1
            return json.dumps({"turns": ["<image>\nسؤال", "جواب بدون رقم"]}, ensure_ascii=False)
        if system == SCORE_SYSTEM:
            return json.dumps({"score": 99, "issues": []})
        return json.dumps({"turns": ["<image>\nسؤال", "جواب ٥٠٠ ملغ"]}, ensure_ascii=False)

    rec = Record(
        id="n", conversations=(Turn("human", "<image>\nDose?"), Turn("gpt", "500 mg.")), images=("x.png",), task="vqa"
    )
    write_jsonl([rec], tmp_path / "in.jsonl")
    with FakeOpenAIServer(responder) as server:
        _, stats = run_translation(
            tmp_path / "in.jsonl", tmp_path / "j", config(server, review_sample_rate=0), progress=False
        )
    (out,) = iter_records(tmp_path / "j" / OUTPUT)
    info = out.provenance["translation"]
    assert info["first_score"] == 74 and info["final_score"] == 99 and info["refinement_rounds"] == 1
    assert out.conversations[1].value == "جواب ٥٠٠ ملغ"
    assert stats["share_recovered_of_below"] == 1.0


def test_malformed_and_faulty_replies_are_retried_then_recorded(tmp_path: Path, repair_aware) -> None:
    records = english_records(3)
    write_jsonl(records, tmp_path / "in.jsonl")
    with FakeOpenAIServer(repair_aware(translation_responder)) as server:
        # record 0: translation malformed on every attempt -> failed, sent to humans
        server.fault_when(lambda b: "Case 0:" in str(b) and b["messages"][0]["content"] == TRANSLATE_SYSTEM,
                          "malformed", times=3)  # fmt: skip
        server.fault_when(lambda b: "Case 1:" in str(b), "429", times=2)  # transient: retried
        server.fault_when(lambda b: "Case 2:" in str(b), "malformed", times=1)  # JSON re-asked once
        _, stats = run_translation(
            tmp_path / "in.jsonl", tmp_path / "j", config(server, review_sample_rate=0), progress=False
        )
    assert stats["sent_to_humans"]["failed"] == 1
    with JobStore(tmp_path / "j" / JOB_DB) as store:
        items = {i.result.rec_id: i for i in store.items()}
    assert items["rec-0"].result.status == "failed" and "translation failed" in items["rec-0"].result.info["error"]
    assert items["rec-1"].result.status in ("done", "review") and items["rec-2"].result.output is not None
    exported = [r.provenance["translated_from"] for r in iter_records(tmp_path / "j" / OUTPUT)]
    assert "rec-0" not in exported


def test_invalid_and_arabic_input_lines_are_recorded_not_fatal(server: FakeOpenAIServer, tmp_path: Path) -> None:
    good = english_records(1)[0]
    arabic = Record(id="ar", conversations=(Turn("human", "ما هذا؟"), Turn("gpt", "صورة.")), language="ar")
    path = tmp_path / "in.jsonl"
    write_jsonl([good, arabic], path)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "broken", "conversations": [{"from": "gpt", "value": "x"}]}\n{oops\n')
    _, stats = run_translation(path, tmp_path / "j", config(server), progress=False)
    assert stats["records_translated"] == 1
    assert stats["invalid_input_records"] == 2 and stats["skipped_not_english"] == 1


def test_resuming_with_other_settings_is_refused(server: FakeOpenAIServer, tmp_path: Path) -> None:
    write_jsonl(english_records(2), tmp_path / "in.jsonl")
    run_translation(tmp_path / "in.jsonl", tmp_path / "j", config(server), progress=False)
    with pytest.raises(ConfigError, match=r"changed: \['threshold_test'\]"):
        run_translation(tmp_path / "in.jsonl", tmp_path / "j", config(server, threshold_test=90), progress=False)


def test_json_mode_sends_response_format(server: FakeOpenAIServer, tmp_path: Path) -> None:
    write_jsonl(english_records(1), tmp_path / "in.jsonl")
    run_translation(tmp_path / "in.jsonl", tmp_path / "j", config(server, json_mode=True), progress=False)
    assert server.requests
    assert all(r.body["response_format"] == {"type": "json_object"} for r in server.requests)


def test_bimedix_v1_prompts_are_refused_naming_tables_11_and_12(server: FakeOpenAIServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prompts: bimedix-v1 is not available.*Table 11 .*; Table 12 "):
        load_config(CONFIGS / "translate.yaml", TranslateConfig, ["prompts=bimedix-v1"])
    with pytest.raises(ConfigError, match="unknown prompt set 'v1'; available: toolkit, bimedix-v1"):
        load_config(CONFIGS / "translate.yaml", TranslateConfig, ["prompts=v1"])
    assert load_config(CONFIGS / "translate.yaml", TranslateConfig).prompts == "toolkit"
    write_jsonl(english_records(1), tmp_path / "in.jsonl")
    with pytest.raises(ConfigError, match="Table 11"):  # a config built in code is refused before any request
        run_translation(tmp_path / "in.jsonl", tmp_path / "j", config(server, prompts="bimedix-v1"), progress=False)
    assert server.requests == [] and not (tmp_path / "j" / JOB_DB).exists()


def test_bimedix_v1_prompts_once_sourced_are_sent_recorded_and_pinned(tmp_path: Path, monkeypatch) -> None:
    # stand-ins for Tables 11-12 (not sourced): the option's mechanism, not the paper's words, is tested
    monkeypatch.setattr(prompts_v1, "TRANSLATE", replace(prompts_v1.TRANSLATE, text="STAND-IN TABLE 11"))
    monkeypatch.setattr(prompts_v1, "SCORE", replace(prompts_v1.SCORE, text="STAND-IN TABLE 12"))
    v1 = {
        f"STAND-IN TABLE 11\n\n{TRANSLATE_CONTRACT}": TRANSLATE_SYSTEM,
        f"STAND-IN TABLE 12\n\n{SCORE_CONTRACT}": SCORE_SYSTEM,
    }
    seen = []

    def v1_responder(body: dict) -> str:
        system = body["messages"][0]["content"]
        seen.append(system)
        messages = [{"role": "system", "content": v1.get(system, system)}, *body["messages"][1:]]
        return translation_responder({**body, "messages": messages})

    write_jsonl(english_records(3), tmp_path / "in.jsonl")
    with FakeOpenAIServer(v1_responder) as server:
        v1_cfg = config(server, prompts="bimedix-v1")
        _, stats = run_translation(tmp_path / "in.jsonl", tmp_path / "j", v1_cfg, progress=False)
        assert stats["records_translated"] == 3
        with pytest.raises(ConfigError, match=r"changed: \['prompts'\]"):
            run_translation(tmp_path / "in.jsonl", tmp_path / "j", config(server), progress=False)
    assert set(v1) <= set(seen) and TRANSLATE_SYSTEM not in seen and SCORE_SYSTEM not in seen
    assert "prompts: bimedix-v1" in (tmp_path / "j" / "config.yaml").read_text()
