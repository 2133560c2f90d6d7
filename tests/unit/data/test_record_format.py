"""One record format, one parser: training and `bimedix2 data validate` accept and reject the same records alike."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bimedix2.cli import main
from bimedix2.data.io import write_jsonl, write_parquet
from bimedix2.data.schema import Record, Turn, record_from_json
from bimedix2.errors import RecordError
from bimedix2.fileio import atomic_write_text, atomic_writer
from bimedix2.train.records import read_records


def turn(speaker: str, value: str) -> dict[str, str]:
    return {"from": speaker, "value": value}


QA = [turn("human", "What is seen?"), turn("gpt", "A consolidation.")]

GOOD: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "llava": ({"id": "a", "conversations": QA}, ("human", "gpt")),
    "aliases, any case": (
        {
            "id": "b",
            "conversations": [turn("User", "q?"), turn("ASSISTANT", "a."), turn("Human", "q2?"), turn("GPT", "b.")],
        },
        ("human", "gpt", "human", "gpt"),
    ),
    "leading system turn": (
        {"id": "c", "conversations": [turn("system", "Be concise."), *QA]},
        ("system", "human", "gpt"),
    ),
    "integer id, two images": (
        {"id": 7, "image": ["x.png", "y.png"], "conversations": [turn("human", "<image><image>\nCompare."), QA[1]]},
        ("human", "gpt"),
    ),
}


@pytest.mark.parametrize("case", GOOD)
def test_good_records_parse_alike(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj, speakers = GOOD[case]
    path = tmp_path / "good.jsonl"
    path.write_text(json.dumps(obj) + "\n", encoding="utf-8")
    record = record_from_json(obj)
    assert tuple(t.speaker for t in record.conversations) == speakers
    (trained,) = read_records([path])
    assert trained.id == str(obj["id"]) and [m.role for m in trained.messages] == [
        {"system": "system", "human": "user", "gpt": "assistant"}[s] for s in speakers
    ]
    assert trained.n_images == len(record.images)
    assert main(["data", "validate", str(path)]) == 0
    assert "1 records, OK" in capsys.readouterr().out


BAD: dict[str, tuple[bytes, str]] = {
    "unknown role": (
        json.dumps({"id": "r", "conversations": [QA[0], turn("bot", "y")]}).encode(),
        "conversations[1] has unknown 'from' 'bot'",
    ),
    "system turn not first": (
        json.dumps({"id": "s", "conversations": [*QA, turn("system", "late")]}).encode(),
        "conversations[2] is a system turn; only the first turn may be one",
    ),
    "missing id": (json.dumps({"conversations": QA}).encode(), "'id' must be a non-empty string"),
    "more images than placeholders": (
        json.dumps(
            {"id": "two", "image": ["a.png", "b.png"], "conversations": [turn("human", "<image>\nx"), QA[1]]}
        ).encode(),
        "2 image(s) but 1 <image> placeholder(s) in the human turns",
    ),
    "placeholder in an answer": (
        json.dumps(
            {"id": "g", "image": "a.png", "conversations": [turn("human", "<image>\nx"), turn("gpt", "<image>")]}
        ).encode(),
        "conversations[1] (gpt) contains <image>",
    ),
    "invalid UTF-8": (b'{"id": "u", "conversations": [{"from": "human", "value": "\xff"}]}', "not valid UTF-8"),
    "not an object": (b"[1, 2]", "expected a JSON object"),
    "not JSON": (b"{not json", "not valid JSON"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_record_gets_the_same_error_from_training_and_validate(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, expected = BAD[case]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(line + b"\n")
    with pytest.raises(RecordError) as caught:
        read_records([path])
    trained = re.fullmatch(rf"{re.escape(str(path))}:1: (?:record (\S+): )?(.*)", str(caught.value))
    assert trained, str(caught.value)
    assert main(["data", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    validated = re.search(rf"{re.escape(str(path))}: line 1 \(id (\S+)\): (.*)", out)
    assert validated, out
    assert expected in trained.group(2)
    assert trained.group(2) == validated.group(2)  # the same words
    assert (trained.group(1) or "?") == validated.group(1)  # and the same record named


def test_json_arrays_name_the_index(tmp_path: Path) -> None:
    path = tmp_path / "llava.json"
    path.write_text(json.dumps([{"id": "a", "conversations": QA}, {"id": "b", "conversations": [turn("bot", "x")]}]))
    with pytest.raises(RecordError, match=r"llava\.json\[1\]: record b: conversations\[0\] has unknown 'from'"):
        read_records([path])
    path.write_bytes(b'[{"id": "\xff"}]')
    with pytest.raises(RecordError, match=r"llava\.json:1: not valid UTF-8"):
        read_records([path])


def _failing_records() -> Iterator[Record]:
    yield Record(id="new", conversations=(Turn("human", "q"), Turn("gpt", "a")))
    raise RuntimeError("crash mid-write")


def _write_then_fail(path: Path) -> None:
    with atomic_writer(path) as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")


WRITERS: dict[str, Callable[[Path], object]] = {
    "atomic_writer": _write_then_fail,
    "atomic_write_text": lambda path: atomic_write_text(path, _explode()),
    "write_jsonl": lambda path: write_jsonl(_failing_records(), path),
    "write_parquet": lambda path: write_parquet(_failing_records(), path),
}


def _explode() -> str:
    raise RuntimeError("crash before the write")


@pytest.mark.parametrize("writer", WRITERS)
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(writer: str, tmp_path: Path) -> None:
    path = tmp_path / "out.data"
    path.write_bytes(b"previous content\n")
    with pytest.raises(RuntimeError):
        WRITERS[writer](path)
    assert path.read_bytes() == b"previous content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.data"]
