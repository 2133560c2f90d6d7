"""The rater app's API: the sheet served without the key, choices saved atomically per rater, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bimedix2.errors import ConfigError, EvalDataError
from bimedix2.eval.conversations import ScriptItem
from bimedix2.eval.rater.app import create_rater_app
from bimedix2.eval.rater.ratings import check_rater
from bimedix2.eval.rater.sheet import read_key, write_sheet

ITEMS = [ScriptItem("s-en", "en", "I have a cough."), ScriptItem("s-ar", "ar", "عندي سعال.")]


def _convs(tag: str) -> dict[str, list[dict[str, str]]]:
    return {it.id: [{"role": "user", "content": it.opening}, {"role": "assistant", "content": tag}] for it in ITEMS}


def make_eval_dir(out: Path, seed: int = 0) -> Path:
    """An evaluation folder with a sheet for two pairs (one Arabic), as `eval conversations` writes it."""
    write_sheet(out, ITEMS, {"a": _convs("reply of model a"), "b": _convs("reply of model b")}, seed)
    return out


def test_sheet_is_anonymised_stable_and_keyed(tmp_path: Path) -> None:
    out = make_eval_dir(tmp_path / "e")
    sheet = (out / "rating" / "sheet.jsonl").read_text(encoding="utf-8")
    key = read_key(out)
    assert "s-en" not in sheet and "s-ar" not in sheet  # script ids only in the key
    assert {k["id"] for k in key.values()} == {"s-en", "s-ar"}
    rows = [json.loads(line) for line in sheet.splitlines()]
    for row in rows:
        model = key[row["pair"]]["A"]
        assert row["A"][1]["content"] == f"reply of model {model}"
    csv_text = (out / "rating" / "sheet.csv").read_text(encoding="utf-8")
    assert "عندي سعال." in csv_text and "choice (A, B or tie)" in csv_text
    before = (out / "rating_key.json").read_text()
    make_eval_dir(out)
    assert (out / "rating_key.json").read_text() == before  # rewriting never moves a pair


def test_api_saves_choices_per_rater_and_refuses_bad_input(tmp_path: Path) -> None:
    out = make_eval_dir(tmp_path / "e")
    client = TestClient(create_rater_app(out, "dr-one"), base_url="http://127.0.0.1")
    data = client.get("/api/pairs").json()
    assert data["rater"] == "dr-one" and len(data["pairs"]) == 2 and data["ratings"] == {}
    assert "not for clinical use" in data["notice"]
    assert "rating_key" not in json.dumps(data) and "s-en" not in json.dumps(data)
    pair = data["pairs"][0]["pair"]
    assert client.put(f"/api/ratings/{pair}", json={"choice": "tie"}).status_code == 200
    assert client.put(f"/api/ratings/{pair}", json={"choice": "C"}).status_code == 422
    assert client.put("/api/ratings/p-nope", json={"choice": "A"}).status_code == 404
    saved = json.loads((out / "rating" / "ratings" / "dr-one.json").read_text())
    assert saved["ratings"][pair]["choice"] == "tie" and saved["rater"] == "dr-one"
    again = TestClient(create_rater_app(out, "dr-one"), base_url="http://127.0.0.1")
    assert again.get("/api/pairs").json()["ratings"] == {pair: "tie"}  # kept across restarts
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert client.get("/static/../sheet.jsonl").status_code == 404
    page = client.get("/").text
    assert 'lang="en"' in page and 'role="status"' in page and "<legend>" in page


def test_rater_names_and_missing_sheet(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--rater"):
        check_rater("../x")
    with pytest.raises(EvalDataError, match="eval conversations"):
        create_rater_app(tmp_path, "dr")
