"""Mixing: counts/weights, EN:AR ratio, dedupe, splits, composition table and chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bimedix2.config import from_dict
from bimedix2.data.io import iter_records, write_jsonl
from bimedix2.data.mixing import MixConfig, mix
from bimedix2.data.schema import Record, Turn
from bimedix2.errors import ConfigError, RecordError


def recs(prefix: str, n: int, lang: str, split: str = "train", text: str | None = None) -> list[Record]:
    q = "ما هو التشخيص؟" if lang == "ar" else "What is the diagnosis?"
    return [
        Record(
            id=f"{prefix}-{i}",
            conversations=(Turn("human", f"{q} {text or prefix} {i}"), Turn("gpt", f"{q} {i}")),
            language=lang,
            split=split,
        )
        for i in range(n)
    ]


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"a": tmp_path / "a.jsonl", "b": tmp_path / "b.jsonl", "ar": tmp_path / "ar.jsonl"}
    write_jsonl(recs("a", 40, "en"), paths["a"])
    # b repeats 5 of a's conversations under other ids (exact duplicates), plus 10 of its own
    dup = [r.with_(id=f"dup-{i}") for i, r in enumerate(recs("a", 5, "en"))]
    write_jsonl(dup + recs("b", 10, "en", "test"), paths["b"])
    write_jsonl(recs("ar", 30, "ar"), paths["ar"])
    return paths


def config(files: dict[str, Path], **kw) -> MixConfig:
    data = {
        "sources": [
            {"path": str(files["a"]), "name": "A"},
            {"path": str(files["b"]), "name": "B"},
            {"path": str(files["ar"]), "name": "Arabic"},
        ],
        **kw,
    }
    return from_dict(MixConfig, data)


def test_ratio_dedupe_table_and_chart(files: dict[str, Path], tmp_path: Path) -> None:
    result = mix(config(files, language_ratio={"en": 2, "ar": 1}), tmp_path / "mix")
    # after dedupe: 50 English, 30 Arabic; 2:1 keeps 50 English and 25 Arabic
    assert result.duplicates_removed == 5
    assert result.counts == {"A": {"en": 40, "ar": 0}, "B": {"en": 10, "ar": 0}, "Arabic": {"en": 0, "ar": 25}}
    out = list(iter_records(tmp_path / "mix" / "mixture.jsonl"))
    assert len(out) == 75 and len({r.id for r in out}) == 75
    assert not any(r.id.startswith("dup-") for r in out)
    assert result.splits == {"train": 65, "validation": 0, "test": 10}
    assert len(list(iter_records(tmp_path / "mix" / "test.jsonl"))) == 10
    assert "| **total** | 50 | 25 | 75 | 100% (EN:AR 2.00:1) |" in result.table
    assert result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "mix" / "composition.json").read_text())["duplicates_removed"] == 5
    assert (tmp_path / "mix" / "config.yaml").is_file()
    # deterministic: same seed, same selection
    again = mix(config(files, language_ratio={"en": 2, "ar": 1}), tmp_path / "mix2")
    assert (tmp_path / "mix2" / "mixture.jsonl").read_bytes() == (tmp_path / "mix" / "mixture.jsonl").read_bytes()
    assert again.counts == result.counts


def test_counts_weights_and_resplit(files: dict[str, Path], tmp_path: Path) -> None:
    cfg = from_dict(
        MixConfig,
        {
            "sources": [{"path": str(files["a"]), "count": 12}, {"path": str(files["ar"]), "weight": 0.5}],
            "total": 20,
            "resplit": {"train": 0.5, "validation": 0.5},
        },
    )
    result = mix(cfg, tmp_path / "m")
    assert result.counts == {"a": {"en": 12, "ar": 0}, "ar": {"en": 0, "ar": 10}}
    assert result.splits["train"] + result.splits["validation"] == 22 and result.splits["test"] == 0
    assert 0 < result.splits["train"] < 22


def test_bad_recipes_are_named(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the top-level total"):
        from_dict(MixConfig, {"sources": [{"path": str(files["a"]), "weight": 0.5}]})
    with pytest.raises(ConfigError, match="language_ratio"):
        config(files, language_ratio={"fr": 1})
    with pytest.raises(RecordError, match="source a: 99 records wanted, only 40"):
        mix(from_dict(MixConfig, {"sources": [{"path": str(files["a"]), "count": 99}]}), tmp_path / "x")
