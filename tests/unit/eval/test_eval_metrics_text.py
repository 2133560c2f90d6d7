"""BLEU / ROUGE-L / METEOR on hand-computed cases, English and Arabic; WordNet from Debian."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bimedix2.errors import EvalDataError
from bimedix2.eval.metrics.text import aggregate_text, bleu, meteor, rouge_l, score_text
from bimedix2.eval.nltk_setup import DEBIAN_WORDNET, LEXNAMES, WORDNET_FILES, lexnames_text, setup_wordnet

needs_wordnet = pytest.mark.skipif(
    not (DEBIAN_WORDNET / "data.noun").is_file(),
    reason="Debian wordnet-base is not installed (scripts/system-deps.sh installs it)",
)


def test_bleu_hand_computed() -> None:
    pred, ref = "the heart is normal", "the heart is normal in size"
    bp = math.exp(1 - 6 / 4)  # all n-gram precisions are 1; brevity penalty only
    assert bleu(pred, ref, 1) == pytest.approx(bp, rel=1e-5)
    assert bleu(pred, ref, 4) == pytest.approx(bp, rel=1e-5)
    assert bleu("no acute process", "no acute process seen today", 4) == 0.0  # no 4-gram at all


def test_rouge_l_hand_computed() -> None:
    # LCS("heart size is normal", "the heart is normal in size") = "heart is normal" (3)
    assert rouge_l("heart size is normal", "the heart is normal in size") == pytest.approx(
        2 * 0.75 * 0.5 / 1.25, rel=1e-5
    )


def test_arabic_text_metrics() -> None:
    pred, ref = "القلبُ طبيعيُّ الحجم", "حجم القلب طبيعي"
    assert bleu(pred, ref, 1) == pytest.approx(2 / 3, rel=1e-5)  # diacritics folded before matching
    assert rouge_l(pred, ref) == pytest.approx(2 / 3)  # LCS "القلب طبيعي"


@needs_wordnet
def test_meteor_exact_and_wordnet_synonym() -> None:
    # identical 4 tokens: Fmean 1, 1 chunk / 4 matches -> penalty 0.5 * (1/4)^3
    assert meteor("the heart is normal", "the heart is normal") == pytest.approx(1 - 0.5 / 64)
    # "sick" ~ "ill" only through WordNet synonyms: 2 matches, 1 chunk -> 1 - 0.5 * (1/2)^3
    assert meteor("sick patient", "ill patient") == pytest.approx(1 - 0.5 / 8)
    # without the synonym only "patient" matches: P = R = 1/2, 1 chunk / 1 match -> 0.5 * (1 - 0.5)
    assert meteor("tired patient", "ill patient") == pytest.approx(0.25)
    assert meteor("", "ill patient") == 0.0


@needs_wordnet
def test_score_and_aggregate() -> None:
    rows = [score_text("no acute findings", "no acute findings"), score_text("pneumonia", "no acute findings")]
    agg = aggregate_text(rows)
    assert agg["n"] == 2 and agg["bleu1"] == pytest.approx((1 + 0) / 2)
    assert set(agg) == {"bleu1", "bleu4", "rougeL", "meteor", "n"}


@needs_wordnet
def test_setup_wordnet_copies_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    target = setup_wordnet(tmp_path / "nltk")
    monkeypatch.setattr(nltk.data, "path", [str(target), *nltk.data.path])  # NLTK reads only listed dirs
    wn = target / "corpora" / "wordnet"
    for name in WORDNET_FILES:
        assert (wn / name).is_file() and not (wn / name).is_symlink()
    lines = (wn / "lexnames").read_text().splitlines()
    assert len(lines) == 45 == len(LEXNAMES)
    assert lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"

    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    with pytest.warns(UserWarning, match="multilingual"):  # WordNet 3.0 without OMW, expected
        reader = WordNetCorpusReader(str(wn), None)
    assert reader.get_version() == "3.0" and reader.synsets("lung")


def test_setup_wordnet_missing_debian_files(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="wordnet-base"):
        setup_wordnet(tmp_path / "nltk", source=tmp_path / "nowhere")
    assert not (tmp_path / "nltk" / "corpora" / "wordnet").exists()


def test_lexnames_text_format() -> None:
    text = lexnames_text()
    assert text.startswith("00\tadj.all\t3\n") and text.count("\n") == 45


@pytest.mark.parametrize("n", [1, 2, 4])
def test_bleu_equals_multimedevals_bleuscore_module(n: int) -> None:
    import random

    from torchmetrics.text import BLEUScore

    module = BLEUScore(n_gram=n)  # what MultiMedEval's ReportComparison calls, per sample
    words = ["no", "acute", "process", "the", "heart", "size", "is", "normal", ".", "left", "effusion", "الرئة"]
    rng = random.Random(n)
    for _ in range(200):
        pred = " ".join(rng.choices(words, k=rng.randint(0, 12)))
        ref = " ".join(rng.choices(words, k=rng.randint(1, 12)))
        assert bleu(pred, ref, n) == float(module([pred], [[ref]]).item()), (pred, ref)
    with pytest.raises(ValueError, match="BLEU-3"):
        bleu("a", "a", 3)
