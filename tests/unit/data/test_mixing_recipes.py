"""The paper mixtures (configs/data/bimed-v.yaml, bimed1.3m.yaml) run at 1/1000 scale on synthetic
inputs of the right shape, and composition token statistics with the tiny tokenizer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bimedix2.config import from_dict, load_config
from bimedix2.data.io import iter_records, write_jsonl
from bimedix2.data.mixing import MixConfig, mix, scaled
from bimedix2.data.schema import Record, Turn
from bimedix2.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
IMAGE_TEXT = {"PMC-MCQ", "LLaVA-Med-Subset-to-Conv", "Rad-VQA", "Slake-VQA", "PMC-VQA", "Path-VQA", "LLaVA-Med-to-QA"}


def is_arabic(name: str) -> bool:
    return name.endswith("(Ara)")


def synthetic(name: str, n: int, *, turns: int = 1) -> list[Record]:
    """``n`` distinct records shaped like the source ``name`` (language, image or not, turns)."""
    lang = "ar" if is_arabic(name) else "en"
    image = name.removesuffix(" (Ara)") in IMAGE_TEXT
    q, a = (
        ("ما سبب الألم في الصدر؟", "قد يكون السبب التهاب الرئة")
        if lang == "ar"
        else ("What causes chest pain?", "It may be pneumonia")
    )
    out = []
    for i in range(n):
        conv: list[Turn] = []
        for t in range(turns):
            prefix = "<image>\n" if image and t == 0 else ""
            conv += [Turn("human", f"{prefix}{q} {name} {i}.{t}"), Turn("gpt", f"{a} {i}.{t}")]
        out.append(
            Record(
                id=f"{name}-{i}",
                conversations=tuple(conv),
                images=(f"img/{name}-{i}.jpg",) if image else (),
                language=lang,
                task="vqa" if image else "chat",
            )
        )
    return out


def with_inputs(cfg: MixConfig, tmp_path: Path, size) -> MixConfig:  # noqa: ANN001
    """``cfg`` with each source's path replaced by a synthetic file of ``size(source)`` records."""
    sources = []
    for i, src in enumerate(cfg.sources):
        path = tmp_path / "in" / f"{i}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(synthetic(src.name, size(src)), path)
        sources.append(replace(src, path=path))
    return replace(cfg, sources=tuple(sources))


def test_bimed_v_recipe_is_the_papers_table_and_mixes_to_its_proportions(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs/data/bimed-v.yaml", MixConfig, ["scale=0.001"])
    table = {s.name: s.count for s in cfg.sources}
    assert all(isinstance(n, int) and n > 0 for n in table.values()) and not cfg.language_ratio
    en = sum(n for name, n in table.items() if not is_arabic(name))
    ar = sum(n for name, n in table.items() if is_arabic(name))
    assert (en, ar, en + ar) == (1_032_949, 658_458, 1_691_407)  # BiMediX2 arXiv v2, Appendix A.7 Table 12

    result = mix(with_inputs(cfg, tmp_path, lambda s: scaled(s.count, 0.001) + 3), tmp_path / "mix")
    for name, n in table.items():
        lang, other = ("ar", "en") if is_arabic(name) else ("en", "ar")
        assert result.counts[name] == {lang: scaled(n, 0.001), other: 0}, name
    got_en = sum(c["en"] for c in result.counts.values())
    got_ar = sum(c["ar"] for c in result.counts.values())
    assert got_en / got_ar == pytest.approx(en / ar, abs=0.01) and round(en / ar, 2) == 1.57
    total = got_en + got_ar
    for name, n in table.items():  # each source's share of the mixture is its share of the table
        assert sum(result.counts[name].values()) / total == pytest.approx(n / (en + ar), abs=0.001), name
    assert result.stats["PubMedQA (Ara)"]["ar"] == {"records": 116, "turns": 232}
    assert "EN:AR 1.57:1" in result.table
    assert len(list(iter_records(result.output))) == total


def test_bimed1_3m_recipe_keeps_two_to_one(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs/data/bimed1.3m.yaml", MixConfig, ["scale=0.001"])
    assert cfg.language_ratio == {"en": 2, "ar": 1} and all(s.count is None for s in cfg.sources)
    sizes = {"MCQA": 30, "Open QA": 20, "Chats": 10, "MCQA (Ara)": 40, "Open QA (Ara)": 24, "Chats (Ara)": 16}
    result = mix(with_inputs(cfg, tmp_path, lambda s: sizes[s.name]), tmp_path / "mix")
    for name in ("MCQA", "Open QA", "Chats"):
        assert result.counts[name]["en"] == sizes[name]  # the under-represented language is never scaled
    ar = {name: result.counts[name]["ar"] for name in sizes if is_arabic(name)}
    assert ar == {"MCQA (Ara)": 15, "Open QA (Ara)": 9, "Chats (Ara)": 6}  # 80 -> 30, each source in proportion
    assert "EN:AR 2.00:1" in result.table


def test_composition_counts_turns_and_tokens_with_the_models_tokenizer(tmp_path: Path) -> None:
    from bimedix2.model.tiny import build_tiny_tokenizer

    tok_dir = tmp_path / "tok"
    tokenizer = build_tiny_tokenizer()
    tokenizer.save_pretrained(tok_dir)
    en, ar = tmp_path / "en.jsonl", tmp_path / "ar.jsonl"
    write_jsonl(synthetic("Chats", 6, turns=2), en)
    write_jsonl(synthetic("Chats (Ara)", 4, turns=3), ar)
    cfg = from_dict(
        MixConfig,
        {
            "sources": [{"path": str(en), "name": "Chats"}, {"path": str(ar), "name": "Chats (Ara)"}],
            "tokenizer": str(tok_dir),
        },
    )
    result = mix(cfg, tmp_path / "mix")

    expected: dict[str, dict[str, int]] = {}
    for record in iter_records(result.output):  # counted independently of the mixer
        cell = expected.setdefault(record.language, {"records": 0, "turns": 0, "tokens": 0})
        cell["records"] += 1
        cell["turns"] += len(record.conversations)
        cell["tokens"] += sum(
            len(tokenizer(t.value, add_special_tokens=False)["input_ids"]) for t in record.conversations
        )
    assert result.stats["Chats"]["en"] == expected["en"] and result.stats["Chats (Ara)"]["ar"] == expected["ar"]
    assert expected["en"]["turns"] == 24 and expected["ar"]["turns"] == 24 and expected["ar"]["tokens"] > 24
    assert result.stats["Chats"]["ar"] == {"records": 0, "turns": 0, "tokens": 0}
    saved = json.loads((tmp_path / "mix" / "composition.json").read_text())
    assert saved["stats"] == result.stats and saved["tokenizer"] == str(tok_dir)
    md = (tmp_path / "mix" / "composition.md").read_text()
    assert "| source | English records | English turns | English tokens | Arabic records |" in md
    tokens = expected["en"]["tokens"]
    assert f"| Chats | 6 | 24 | {tokens:,} | 0 | 0 | 0 |" in md

    no_tokens = mix(replace(cfg, tokenizer=""), tmp_path / "plain")
    assert no_tokens.stats["Chats"]["en"] == {"records": 6, "turns": 24}
    with pytest.raises(ConfigError, match=r"tokenizer: cannot load '.*absent'"):
        mix(replace(cfg, tokenizer=str(tmp_path / "absent")), tmp_path / "bad")
    with pytest.raises(ConfigError, match=r"scale: must be > 0, got 0"):
        from_dict(MixConfig, {"sources": [{"path": str(en)}], "scale": 0})


def test_scale_rounds_and_never_drops_a_source() -> None:
    assert [scaled(n, 0.001) for n in (1796, 1500, 1499, 400, 0)] == [2, 2, 1, 1, 0]
    assert scaled(163463, 1.0) == 163463
