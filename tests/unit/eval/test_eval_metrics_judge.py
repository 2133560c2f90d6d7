"""Judge reply parsing, BiMed-MBench relative scores and UPHILL summaries, hand-computed."""

from __future__ import annotations

import pytest

from bimedix2.eval.metrics.judge import (
    JudgedSample,
    group_relative,
    is_factual,
    mean_relative,
    parse_pair_scores,
    parse_stance,
    uphill_summary,
)


@pytest.mark.parametrize(
    ("reply", "scores"),
    [
        ("8 7\nAssistant 1 is more detailed.", (8.0, 7.0)),
        ("8, 6.5", (8.0, 6.5)),
        ("**9/10 6/10**\nreasons", (9.0, 6.0)),
        ("Here are my scores.\nAssistant 1: 7\nAssistant 2: 4", (7.0, 4.0)),
        ("الدرجات: ٨ و ٥", (8.0, 5.0)),
        ("Scores are 7 and 3 respectively", (7.0, 3.0)),
        ("no numbers at all", None),
        ("7 11", None),
    ],
)
def test_parse_pair_scores(reply: str, scores: tuple[float, float] | None) -> None:
    assert parse_pair_scores(reply) == scores


def test_relative_scores_grouped() -> None:
    assert mean_relative([(6, 8), (9, 9), (5, 0)]) == pytest.approx((75 + 100) / 2)  # reference 0 left out
    samples = [
        JudgedSample("1", "Conversation", ("CXR",), 6, 8),
        JudgedSample("2", "Description", ("CXR",), 9, 9),
        JudgedSample("3", "Conversation", ("MRI",), 4, 8),
        JudgedSample("4", "Conversation", ("MRI",), None, None),
    ]
    out = group_relative(samples)
    assert out["overall"] == pytest.approx((75 + 100 + 50) / 3)
    assert out["by_type"] == {"Conversation": pytest.approx(62.5), "Description": pytest.approx(100)}
    assert out["by_domain"] == {"CXR": pytest.approx(87.5), "MRI": pytest.approx(50)}
    assert out["n"] == 4 and out["n_scored"] == 3 and out["n_unparsed"] == 1


@pytest.mark.parametrize(
    ("reply", "stance"),
    [
        ("Disagree.", "disagree"),
        ("The response agrees with the claim.", "agree"),
        ("NEUTRAL", "neutral"),
        ("It refutes the claim", "disagree"),
        ("يعارض", "disagree"),
        ("لا يوافق على الادعاء", "disagree"),
        ("يوافق", "agree"),
        ("محايد", "neutral"),
        ("unclear", None),
    ],
)
def test_parse_stance(reply: str, stance: str | None) -> None:
    assert parse_stance(reply) == stance


def test_uphill_summary_hand_computed() -> None:
    labels = {
        "false1": ["disagree"] * 5,
        "false2": ["agree", "agree", "neutral", "agree", None],
        "true1": ["agree", "agree", "agree", "agree", "disagree"],
    }
    truth = {"false1": False, "false2": False, "true1": True}
    out = uphill_summary(labels, truth)
    assert out["accuracy_per_level"] == {
        "0": pytest.approx(2 / 3),
        "1": pytest.approx(2 / 3),
        "2": pytest.approx(2 / 3),
        "3": pytest.approx(2 / 3),
        "4": pytest.approx(1 / 3),
    }
    assert out["accuracy"] == pytest.approx(9 / 15)
    assert out["consistency"] == pytest.approx(1 / 3)
    assert out["consistently_factual"] == pytest.approx(1 / 3)
    assert out["unparsed"] == 1 and out["n_claims"] == 3
    assert is_factual("disagree", False) and not is_factual("neutral", False) and is_factual("agree", True)
