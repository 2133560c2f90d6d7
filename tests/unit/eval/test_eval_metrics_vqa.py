"""VQA metrics on hand-computed cases: MultiMedEval's cleaning quirks, thresholds, closed rule,
and the improved mode (answer types, Arabic normalisation)."""

from __future__ import annotations

import math
import random

import pytest

from bimedix2.eval.metrics.normalize import CONTRACTIONS, improved_clean, multimedeval_clean, normalize_arabic
from bimedix2.eval.metrics.vqa import aggregate, bleu1, score_improved, score_multimedeval, yes_no_instruction


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("The Left Lung", "left lung"),  # lower-case, article dropped
        ("x-ray (PA)", "x ray pa"),  # punctuation not touching a space -> a space
        ("a - b", "b"),  # " -" occurs -> "-" deleted outright; "a" is an article
        ("1,000 cells; two.", "1000 cells 2"),  # digit,digit anywhere -> punctuation deleted; number words
        ("3.5 cm.", "3.5 cm"),  # a period before a digit stays, others go
        ("none", "0"),
        ("dont isnt", "don't isn't"),
        ("couldnt've couldntve", "couldn't've couldntve"),  # only single-apostrophe-dropped forms map
        ("somebody'd", "somebodyd"),  # the upstream table's backwards entry
        ("yes.", "yes"),
    ],
)
def test_multimedeval_clean(raw: str, clean: str) -> None:
    assert multimedeval_clean(raw) == clean


def test_period_strip_stops_after_32_periods() -> None:
    # upstream passes re.UNICODE (32) as `count` to re.sub
    assert multimedeval_clean("x" + "." * 40) == "x" + "." * 8


def test_contractions_table_shape() -> None:
    assert CONTRACTIONS["dont"] == "don't"
    assert CONTRACTIONS["y'allll"] == "y'all'll" and CONTRACTIONS["yall'll"] == "y'all'll"
    assert CONTRACTIONS["'ows'at"] == "'ow's'at" and CONTRACTIONS["twas"] == "'twas"


def test_arabic_normalisation() -> None:
    assert normalize_arabic("الرِّئَةُ") == "الريه"  # diacritics, hamza on yaa, taa marbuta
    assert normalize_arabic("أإآٱ") == "اااا"
    assert normalize_arabic("مستشفى") == "مستشفي"  # alef maqsura -> yaa
    assert normalize_arabic("مـــرض") == "مرض"  # tatweel
    assert normalize_arabic("٣ ۴ ١٠") == "3 4 10"
    assert normalize_arabic("left lung, 3 cm") == "left lung, 3 cm"
    assert improved_clean("الرئة اليُمنى؟") == "الريه اليمني"


def test_bleu1_brevity_penalty() -> None:
    assert bleu1("left lung", "right lung") == pytest.approx(0.5)
    assert bleu1("lung", "right lung") == pytest.approx(math.exp(-1))
    assert bleu1("", "lung") == 0.0


def test_closed_no_accepts_not() -> None:
    s = score_multimedeval("No, there is not.", "no")
    # tokens {no, there, is, not} vs {no}: P 1/4, R 1; F1 = 2*0.25/(1.25+1e-8)
    assert s.closed and s.closed_correct and s.open_correct is None
    assert s.precision == pytest.approx(0.25) and s.recall == 1.0
    assert s.f1 == pytest.approx(0.4, abs=1e-7)
    assert s.bleu1 == pytest.approx(0.25)
    # the quirk: "not sure" hits "not" -> closed recall 1/2 = 0.5 >= 0.4 -> counted right
    assert score_multimedeval("not sure", "no").closed_correct
    assert not score_multimedeval("no", "Yes").closed_correct


def test_open_accuracy_threshold() -> None:
    assert not score_multimedeval("upper lobe", "Right upper lobe").open_correct  # 2/3 < 0.75
    assert score_multimedeval("left lower lobe lung", "left lower lobe of lung").open_correct  # 4/5 >= 0.75
    wrong = score_multimedeval("the liver", "spleen")
    assert wrong.recall == 0.0 and wrong.f1 == 0.0 and not wrong.open_correct


def test_closed_rule_multimedeval_vs_improved() -> None:
    # a CLOSED answer type that is not yes/no: open for MultiMedEval, closed for the improved mode
    strict = score_multimedeval("the left side", "left")
    better = score_improved("the left side", "left", "CLOSED")
    assert not strict.closed and strict.open_correct
    assert better.closed and better.closed_correct
    # Arabic: diacritics break MultiMedEval's match; the improved mode folds them
    assert score_multimedeval("نَعَم", "نعم").recall == 0.0
    ar = score_improved("نَعَم", "نعم", None)
    assert ar.closed and ar.closed_correct and ar.recall == 1.0
    assert score_improved("ليس كذلك", "لا", None).closed_correct  # Arabic negation accepted for "لا"


def test_aggregate_hand_computed() -> None:
    scores = [
        score_multimedeval("yes", "yes"),  # closed right, recall 1, f1 ~1, bleu 1
        score_multimedeval("no", "yes"),  # closed wrong, recall 0
        score_multimedeval("upper lobe", "right upper lobe"),  # open, recall 2/3, wrong
        score_multimedeval("right upper lobe", "right upper lobe"),  # open, recall 1, right
    ]
    agg = aggregate(scores)
    assert agg["n"] == 4 and agg["n_closed"] == 2 and agg["n_open"] == 2
    assert agg["closed_accuracy"] == pytest.approx(0.5)
    assert agg["open_recall"] == pytest.approx((2 / 3 + 1) / 2)
    assert agg["open_accuracy"] == pytest.approx(0.5)
    assert agg["recall"] == pytest.approx((1 + 0 + 2 / 3 + 1) / 4)
    f1_open = 2 * (1 * 2 / 3) / (1 + 2 / 3 + 1e-8)
    assert agg["f1"] == pytest.approx((1 + 0 + f1_open + 1) / 4, abs=1e-6)
    # bleu: "upper lobe" vs "right upper lobe": p=1, BP=exp(1-3/2)
    assert agg["bleu1"] == pytest.approx((1 + 0 + math.exp(-0.5) + 1) / 4, abs=1e-6)
    assert aggregate([])["closed_accuracy"] == 0.0


def test_yes_no_instruction_uses_raw_answer() -> None:
    assert yes_no_instruction("yes") and yes_no_instruction("no")
    assert not yes_no_instruction("Yes")  # MultiMedEval compares the raw answer


def test_bleu1_equals_multimedevals_bleuscore_module() -> None:
    from torchmetrics.text import BLEUScore

    module = BLEUScore(n_gram=1)  # what MultiMedEval's VQA.evaluate calls, per sample
    words = ["yes", "no", "left", "right", "lung", "the", "in", "is", "2", "كبد", "الرئة"]
    rng = random.Random(7)
    for _ in range(300):
        pred = " ".join(rng.choices(words, k=rng.randint(0, 7)))
        gold = " ".join(rng.choices(words, k=rng.randint(1, 5)))
        assert bleu1(pred, gold) == float(module([pred], [[gold]]).item()), (pred, gold)
