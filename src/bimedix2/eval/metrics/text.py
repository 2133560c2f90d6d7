"""Report generation / summarization metrics: BLEU-1, BLEU-4, ROUGE-L, METEOR.

BLEU and ROUGE-L follow MultiMedEval's `ReportComparison` (multimedeval/task_families.py:
torchmetrics `BLEUScore(n_gram=1|4)` and `ROUGEScore(rouge_keys=("rougeL", ...))` F-measure,
per sample, then averaged). METEOR is NLTK's `meteor_score` on `word_tokenize(text,
preserve_line=True)` tokens (no punkt needed), with WordNet from `nltk_setup`. Arabic text
is folded by `normalize_arabic` first (a no-op on English).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from functools import lru_cache

from .normalize import normalize_arabic

TEXT_METRICS = ("bleu1", "bleu4", "rougeL", "meteor")


@lru_cache(maxsize=1)
def _rouge():  # noqa: ANN202
    from torchmetrics.text import ROUGEScore

    return ROUGEScore(rouge_keys=("rougeL",))


def bleu(prediction: str, reference: str, n: int) -> float:
    """Sentence BLEU-n, n in (1, 2, 4) (uniform weights, brevity penalty, no smoothing) via torchmetrics.

    BLEU-2 (weights 1/2, 1/2) is RadCliQ's BLEU input, as MultiMedEval's ReportComparison computes it.
    torchmetrics' functional `bleu_score` equals MultiMedEval's `BLEUScore(n_gram=n)` module call
    (tests/unit/eval/test_eval_metrics_text.py) without the module's per-call state bookkeeping.
    """
    if n not in (1, 2, 4):
        raise ValueError(f"BLEU-{n}: n must be 1, 2 or 4")
    from torchmetrics.functional.text import bleu_score

    return float(bleu_score([normalize_arabic(prediction)], [[normalize_arabic(reference)]], n_gram=n).item())


class _UnicodeTokenizer:
    """Lower-cased \\w+ tokens in any script (rouge_score's default keeps only [a-z0-9])."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


_WORD = re.compile(r"\w+", re.UNICODE)
_ARABIC = re.compile(r"[\u0600-\u06FF]")


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: torchmetrics as MultiMedEval for Latin text; rouge_score with a Unicode
    tokenizer when either text has Arabic letters (both default tokenizers drop non-ASCII words)."""
    pred, ref = normalize_arabic(prediction), normalize_arabic(reference)
    if _ARABIC.search(pred) or _ARABIC.search(ref):
        from rouge_score.rouge_scorer import RougeScorer

        return float(RougeScorer(["rougeL"], tokenizer=_UnicodeTokenizer()).score(ref, pred)["rougeL"].fmeasure)
    rouge = _rouge()
    return float(rouge([pred], [[ref]])["rougeL_fmeasure"].item())


def tokenize(text: str) -> list[str]:
    """NLTK word tokens, lower-cased; `preserve_line=True` skips punkt sentence splitting."""
    from nltk.tokenize import word_tokenize

    return word_tokenize(normalize_arabic(text).lower(), preserve_line=True)


def meteor(prediction: str, reference: str) -> float:
    """NLTK METEOR (alpha 0.9, beta 3, gamma 0.5; exact, stem and WordNet-synonym matches)."""
    from nltk.translate.meteor_score import meteor_score

    from ..nltk_setup import ensure_nltk_data

    ensure_nltk_data()
    hyp, ref = tokenize(prediction), tokenize(reference)
    if not hyp or not ref:
        return 0.0
    with warnings.catch_warnings():  # WordNet 3.0 without OMW: NLTK warns about multilingual lookups we never use
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return float(meteor_score([ref], hyp))


def score_text(prediction: str, reference: str) -> dict[str, float]:
    """Every text metric for one sample."""
    return {
        "bleu1": bleu(prediction, reference, 1),
        "bleu4": bleu(prediction, reference, 4),
        "rougeL": rouge_l(prediction, reference),
        "meteor": meteor(prediction, reference),
    }


def aggregate_text(per_sample: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over samples."""
    if not per_sample:
        return {name: 0.0 for name in TEXT_METRICS} | {"n": 0.0}
    out = {name: sum(s[name] for s in per_sample) / len(per_sample) for name in TEXT_METRICS}
    out["n"] = float(len(per_sample))
    return out
