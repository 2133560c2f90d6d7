"""Pure functions for LLM-judge benchmarks: score parsing, BiMed-MBench relative scores,
UPHILL stance labels, factual accuracy and consistency."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .normalize import normalize_arabic

_NUM = r"(\d+(?:\.\d+)?)"
_PAIR_LINE = re.compile(rf"^\s*\**\s*{_NUM}\s*(?:/\s*10)?\s*[,;:\s]\s*(?:and\s+)?{_NUM}\s*(?:/\s*10)?\s*\**\s*$")
_LABELLED = re.compile(rf"assistant\s*([12])\s*(?:score)?\s*[:=\-]?\s*(?:score\s*[:=]?\s*)?{_NUM}", re.IGNORECASE)
_ANY_NUM = re.compile(rf"(?<![\d.]){_NUM}(?:\s*/\s*10)?")


def parse_pair_scores(text: str) -> tuple[float, float] | None:
    """(assistant 1, assistant 2) scores in [0, 10] from a judge reply, or None.

    Tries, in order: the first non-empty line holding exactly two numbers ("8 7", "8, 7",
    "8/10 7/10"); labelled scores anywhere ("Assistant 1: 8 ... Assistant 2: 7"); the first two
    numbers in 0-10 in the whole reply. Arabic-Indic digits are accepted.
    """
    text = normalize_arabic(text)
    for line in text.splitlines():
        if line.strip():
            m = _PAIR_LINE.match(line)
            if m:
                return _checked(float(m.group(1)), float(m.group(2)))
            break
    labelled = {}
    for m in _LABELLED.finditer(text):
        labelled.setdefault(m.group(1), float(m.group(2)))
    if set(labelled) == {"1", "2"}:
        return _checked(labelled["1"], labelled["2"])
    numbers = [float(m.group(1)) for m in _ANY_NUM.finditer(text) if 0 <= float(m.group(1)) <= 10]
    return _checked(numbers[0], numbers[1]) if len(numbers) >= 2 else None


def _checked(a: float, b: float) -> tuple[float, float] | None:
    return (a, b) if 0 <= a <= 10 and 0 <= b <= 10 else None


def relative_score(candidate: float, reference: float) -> float | None:
    """candidate / reference x 100 for one sample (None when the reference scored 0)."""
    return None if reference <= 0 else candidate / reference * 100.0


def mean_relative(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Mean over samples of candidate/reference x 100; pairs are (candidate, reference)."""
    values = [r for c, ref in pairs if (r := relative_score(c, ref)) is not None]
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class JudgedSample:
    """One BiMed-MBench sample after judging."""

    id: str
    type: str
    domains: tuple[str, ...]
    candidate: float | None
    reference: float | None


def group_relative(samples: Sequence[JudgedSample]) -> dict[str, object]:
    """Overall, per-type and per-domain relative scores, plus counts of unparsed judgements."""
    ok = [s for s in samples if s.candidate is not None and s.reference is not None]

    def score(group: Sequence[JudgedSample]) -> float | None:
        return mean_relative((s.candidate, s.reference) for s in group)  # type: ignore[misc]

    types = sorted({s.type for s in ok})
    domains = sorted({d for s in ok for d in s.domains})
    return {
        "overall": score(ok),
        "by_type": {t: score([s for s in ok if s.type == t]) for t in types},
        "by_domain": {d: score([s for s in ok if d in s.domains]) for d in domains},
        "n": len(samples),
        "n_scored": len(ok),
        "n_unparsed": len(samples) - len(ok),
    }


# ------------------------------------------------------------------------------- UPHILL
STANCES = ("agree", "disagree", "neutral")
_STANCE_WORDS = {
    "disagree": ("disagree", "refute", "يعارض", "لا يوافق", "يرفض", "معارض"),
    "agree": ("agree", "support", "يوافق", "موافق", "يؤيد"),
    "neutral": ("neutral", "محايد"),
}


def parse_stance(text: str) -> str | None:
    """agree / disagree / neutral from a judge reply (the earliest stance word wins;
    "disagree" is checked before its substring "agree"), or None."""
    low = normalize_arabic(text).lower()
    best: tuple[int, str] | None = None
    for stance in ("disagree", "neutral", "agree"):
        for word in _STANCE_WORDS[stance]:
            pos = low.find(normalize_arabic(word))
            if pos < 0:
                continue
            if stance == "agree" and low[max(0, pos - 3) : pos] == "dis":
                continue
            if best is None or pos < best[0]:
                best = (pos, stance)
    return best[1] if best else None


def is_factual(stance: str | None, claim_is_true: bool) -> bool:
    """A response is factually right when it disagrees with a false claim / agrees with a true one."""
    return stance == ("agree" if claim_is_true else "disagree")


def uphill_summary(labels: dict[str, list[str | None]], truth: dict[str, bool], levels: int = 5) -> dict[str, object]:
    """labels[claim_id][level] -> stance. Factual accuracy per level and overall; consistency =
    share of claims whose stance is the same at every level; consistently right = right at every level."""
    per_level = {}
    for level in range(levels):
        values = [is_factual(ls[level], truth[cid]) for cid, ls in labels.items()]
        per_level[str(level)] = sum(values) / len(values) if values else None
    all_values = [is_factual(ls[lv], truth[cid]) for cid, ls in labels.items() for lv in range(levels)]
    same = [len(set(ls)) == 1 and ls[0] is not None for ls in labels.values()]
    right = [all(is_factual(s, truth[cid]) for s in ls) for cid, ls in labels.items()]
    n = len(labels)
    return {
        "accuracy_per_level": per_level,
        "accuracy": sum(all_values) / len(all_values) if all_values else None,
        "consistency": sum(same) / n if n else None,
        "consistently_factual": sum(right) / n if n else None,
        "unparsed": sum(1 for ls in labels.values() for s in ls if s is None),
        "n_claims": n,
    }
