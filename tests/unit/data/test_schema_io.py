"""Schema validation and JSONL / Parquet / HF datasets I/O; Arabic survives byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bimedix2.data.io import (
    dumps_record,
    iter_parquet,
    iter_records,
    load_hf_dataset,
    validate_file,
    write_jsonl,
    write_parquet,
)
from bimedix2.data.schema import Record, Turn, record_from_json, record_to_json, validate_record
from bimedix2.errors import RecordError

# Diacritics, tatweel, alef forms, taa marbuta, Arabic-Indic digits, RLM mark: must all survive.
ARABIC = "إِنَّ الجرعةَ ٥٠٠ ملغ من Paracetamol مرتين يومياً ـــ آلام الرأس؟\u200f"


def ar_record(rid: str = "r-ar") -> Record:
    return Record(
        id=rid,
        conversations=(Turn("human", "<image>\n" + ARABIC), Turn("gpt", "أَنْتَ بِخَيْر. " + ARABIC)),
        images=("imgs/a.png",),
        language="ar",
        source="slake",
        task="vqa",
        modality="CT",
        split="test",
        provenance={"score": 91, "ملاحظة": ARABIC},
    )


def test_jsonl_round_trip_is_byte_exact(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    records = [
        ar_record("1"),
        ar_record("2").with_(images=(), conversations=(Turn("human", ARABIC), Turn("gpt", ARABIC))),
    ]
    assert write_jsonl(records, path) == 2
    raw = path.read_bytes()
    assert ARABIC.encode("utf-8") in raw  # stored as UTF-8, not \\u escapes
    back = list(iter_records(path))
    assert back == records
    assert back[0].conversations[1].value.encode() == records[0].conversations[1].value.encode()
    write_jsonl(back, tmp_path / "b.jsonl")
    assert (tmp_path / "b.jsonl").read_bytes() == raw


def test_parquet_and_hf_round_trip(tmp_path: Path) -> None:
    records = [ar_record(str(i)) for i in range(5)]
    write_parquet(records, tmp_path / "a.parquet", batch_size=2)
    assert list(iter_parquet(tmp_path / "a.parquet", batch_size=3)) == records
    write_jsonl(records, tmp_path / "a.jsonl")
    ds = load_hf_dataset(tmp_path / "a.jsonl")
    assert len(ds) == 5
    assert ds[0]["conversations"][1]["value"] == records[0].conversations[1].value
    assert ds[0]["images"] == ["imgs/a.png"]


def test_llava_json_shape_and_defaults() -> None:
    obj = record_to_json(ar_record())
    assert obj["image"] == "imgs/a.png" and obj["conversations"][0]["from"] == "human"
    plain = {
        "id": 7,
        "image": ["a.png", "b.png"],
        "conversations": [
            {"from": "human", "value": "<image><image>\nما هذا؟"},
            {"from": "gpt", "value": "صورة أشعة."},
        ],
    }
    rec = record_from_json(plain)
    assert rec.id == "7" and rec.images == ("a.png", "b.png") and rec.language == "ar"
    assert validate_record(rec) == []
    assert json.loads(dumps_record(rec))["image"] == ["a.png", "b.png"]


def test_validate_record_finds_every_problem() -> None:
    bad = Record(
        id="x",
        conversations=(Turn("gpt", "<image> hi"), Turn("gpt", " ")),
        images=("/abs.png",),
        language="ar",
        split="dev",
        task="chitchat",
        modality="PET-CT",
    )
    problems = " | ".join(validate_record(bad))
    for expected in (
        "turn 0 is from 'gpt'",
        "turn 1 is empty",
        "conversations[0] (gpt) contains <image>",
        "1 image(s) but 0 <image> placeholder(s)",
        "not Arabic",
        "split 'dev'",
        "task 'chitchat'",
        "modality 'PET-CT'",
        "must be relative",
    ):
        assert expected in problems


def test_validate_file_reports_every_bad_line(tmp_path: Path) -> None:
    good = dumps_record(ar_record("ok-1"))
    lines = [
        good,
        "{not json",
        json.dumps({"id": "no-convs"}),
        json.dumps({"id": "ok-1", "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}),
        json.dumps(
            {
                "id": "img",
                "image": "missing.png",
                "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}],
            }
        ),
        "",
        json.dumps({"id": "bad-from", "conversations": [{"from": "bot", "value": "a"}]}),
    ]
    path = tmp_path / "f.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    report = validate_file(path, image_root=tmp_path)
    assert report.total == 6
    got = {(i.line, i.id): i.problems for i in report.issues}
    assert set(got) == {(2, ""), (3, "no-convs"), (4, "ok-1"), (5, "img"), (7, "bad-from")}
    assert "not valid JSON" in got[(2, "")][0]
    assert "'conversations' must be a list" in got[(3, "no-convs")][0]
    assert "duplicate id (first on line 1)" in got[(4, "ok-1")]
    assert "image not found: missing.png" in got[(5, "img")]
    assert "conversations[0] has unknown 'from' 'bot'" in got[(7, "bad-from")][0]
    assert report.missing_images == 1


def test_read_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": "a", "conversations": []}\n[1]\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"x.jsonl:2: expected a JSON object"):
        list(iter_records(path))
    with pytest.raises(RecordError, match="file not found"):
        list(iter_records(tmp_path / "absent.jsonl"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    def boom():
        yield ar_record("1")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(boom(), tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_repeated_ids_all_point_to_the_first(tmp_path: Path) -> None:
    rec = {"id": "d", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    other = dict(rec, id="e")
    lines = [rec, other, rec, dict(rec, split="dev"), other]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    report = validate_file(path)
    got = {(i.line, i.id): i.problems for i in report.issues}
    assert got == {
        (3, "d"): ("duplicate id (first on line 1)",),
        (4, "d"): (
            "split 'dev' is not one of ('train', 'validation', 'test')",
            "duplicate id (first on line 1)",
        ),
        (5, "e"): ("duplicate id (first on line 2)",),
    }
