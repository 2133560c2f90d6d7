"""Pairwise, anonymised judging of two models' conversations: the judge request, the strict verdict
parser, the position-swap rule, the judge's position bias and win/tie/loss with bootstrap 95% intervals.

The judge sees the two conversations as "Assistant 1" and "Assistant 2" (never a model's name),
once in each order. A verdict counts only when both orders name the same model; two orders that
disagree (the judge followed the position, not the answer) count as a tie; a reply whose first
line is not a verdict is unparsed: counted and left out of win/tie/loss, never scored as a loss.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from .bootstrap import DEFAULT_RESAMPLES, Resampling, bootstrap_ci, nest, point_estimates, weighted_mean

Verdict = Literal["1", "2", "tie"]
Outcome = Literal["win", "tie", "loss"]  # model A's view
OUTCOMES: tuple[Outcome, ...] = ("win", "tie", "loss")
PROMPT_VERSION = 1  # part of the judgements' fingerprint: change it when the request text changes

JUDGE_SYSTEM = "You are a careful medical expert who compares two AI assistants' conversations with a patient."
JUDGE_RUBRIC = (
    "Above are two complete multi-turn conversations between a patient and an AI medical assistant. The patient's "
    "turns may differ between the two when the patient reacted to each assistant. Compare the two assistants over "
    "the whole conversation: medical accuracy, helpfulness, asking for the symptoms and history that matter, "
    "safety (urging urgent care when needed, no harmful advice), clarity, and answering in the patient's "
    "language{language_note}. Do not let the order in which the conversations are shown or their length affect "
    "your judgement.\n"
    "Output a first line holding only one of: Assistant 1, Assistant 2, Tie. Then explain briefly."
)
LANGUAGE_NOTE = {"en": " (English)", "ar": " (Modern Standard Arabic; deduct for replies in another language)"}
ROLE_NAMES = {"user": "Patient", "assistant": "Assistant"}

_VERDICT = re.compile(r"^[\s*#\[\]\"'`]*(?:assistant\s*([12])|(tie))[\s*\]\[\"'`.!:]*$", re.IGNORECASE)


def transcript(turns: Sequence[Mapping[str, str]], name: str) -> str:
    """One conversation as the judge reads it (`name`: "Assistant 1" or "Assistant 2")."""
    lines = [f"[Conversation with {name}]"]
    for turn in turns:
        who = "Patient" if turn["role"] == "user" else name
        lines.append(f"{who}: {turn['content']}")
    lines.append(f"[End of conversation with {name}]")
    return "\n".join(lines)


def judge_messages(first: Sequence[Mapping[str, str]], second: Sequence[Mapping[str, str]], language: str) -> list:
    """The judge's chat messages for one order (`first` shown as Assistant 1)."""
    body = "\n\n".join(
        [
            transcript(first, "Assistant 1"),
            transcript(second, "Assistant 2"),
            "[System]\n" + JUDGE_RUBRIC.format(language_note=LANGUAGE_NOTE.get(language, "")),
        ]
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def parse_verdict(reply: str) -> Verdict | None:
    """ "1", "2" or "tie" from the first non-empty line of a judge reply; None unless that line is only a verdict.

    Accepted: "Assistant 1", "assistant 2", "**Tie**", "[[Assistant 1]]", a trailing period. Not accepted:
    a line with anything else on it ("Assistant 1 is better", "1", "Both"), so an explanation is never
    mistaken for a verdict.
    """
    for line in reply.splitlines():
        if line.strip():
            m = _VERDICT.match(line)
            if not m:
                return None
            return "tie" if m.group(2) else m.group(1)  # type: ignore[return-value]
    return None


def to_model(verdict: Verdict | None, a_first: bool) -> str | None:
    """A verdict about positions as one about models: "a", "b", "tie" (None stays None)."""
    if verdict is None or verdict == "tie":
        return verdict
    return "a" if (verdict == "1") == a_first else "b"


def combine(ab: str | None, ba: str | None) -> tuple[Outcome | None, bool | None]:
    """(model A's outcome, whether the two orders agreed) from the model-level verdicts of both orders.

    Unparsed in either order: (None, None). Orders that disagree: a tie, consistent = False.
    """
    if ab is None or ba is None:
        return None, None
    if ab != ba:
        return "tie", False
    return {"a": "win", "b": "loss", "tie": "tie"}[ab], True  # type: ignore[return-value]


def position_bias(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How the judge's choices follow the position: over every parsed single-order verdict.

    `first_position_rate`: share of non-tie verdicts that chose Assistant 1 (0.5 = no preference);
    `consistency`: share of pairs judged in both orders whose two verdicts name the same model;
    `inconsistent`: pairs where they did not (counted as ties).
    """
    positions = [r[k] for r in rows for k in ("verdict_ab", "verdict_ba") if r.get(k) in ("1", "2")]
    both = [r for r in rows if r.get("consistent") is not None]
    return {
        "first_position_rate": (positions.count("1") / len(positions)) if positions else None,
        "n_position_verdicts": len(positions),
        "consistency": (sum(bool(r["consistent"]) for r in both) / len(both)) if both else None,
        "inconsistent": sum(r["consistent"] is False for r in both),
        "n_pairs_both_orders": len(both),
    }


def outcome_resampling(rows: Sequence[Mapping[str, Any]], cluster_key: str | None = None) -> Resampling:
    """Win/tie/loss shares overall and per language, resampled within languages.

    `rows`: {"id", "language", "outcome"} with a parsed outcome; `cluster_key` draws rows sharing that
    field whole (a pair rated by several clinicians is one unit).
    """
    languages = [str(r["language"]) for r in rows]
    indicator = {o: np.array([float(r["outcome"] == o) for r in rows]) for o in OUTCOMES}
    names = sorted(set(languages))

    def statistic(weights: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
        out: dict[tuple[str, ...], np.ndarray] = {}
        for group in ("overall", *names):
            mask = np.ones(len(rows)) if group == "overall" else np.array([float(x == group) for x in languages])
            for o in OUTCOMES:
                out[(group, o)] = weighted_mean(weights * mask, indicator[o])
        return out

    return Resampling(
        ids=[str(r["id"]) for r in rows],
        statistic=statistic,
        strata=languages,
        clusters=[str(r[cluster_key]) for r in rows] if cluster_key else None,
        unit="pair",
    )


def win_tie_loss(
    rows: Sequence[Mapping[str, Any]],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    cluster_key: str | None = None,
) -> dict[str, Any]:
    """{group: {win, tie, loss, n, ci95: {win: [lo, hi], ...}}} for "overall" and each language, plus "bootstrap"."""
    counted = [r for r in rows if r.get("outcome") in OUTCOMES]
    if not counted:
        return {"overall": {"win": None, "tie": None, "loss": None, "n": 0, "ci95": None}, "bootstrap": None}
    resampling = outcome_resampling(counted, cluster_key)
    points = nest(point_estimates(resampling))
    intervals = bootstrap_ci(resampling, n_resamples, seed) if n_resamples else {"ci95": {}, "bootstrap": None}
    out: dict[str, Any] = {}
    for group, values in points.items():
        members = [r for r in counted if group == "overall" or r["language"] == group]
        out[group] = {**values, "n": len(members), "ci95": intervals["ci95"].get(group)}
    out["bootstrap"] = intervals["bootstrap"]
    return out
