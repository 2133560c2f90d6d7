"""VQA metrics exactly as MultiMedEval computes them, plus a labelled "improved" mode.

Reference: corentin-ryr/MultiMedEval, multimedeval/task_families.py `VQA.evaluate` and
multimedeval/vqa.py `get_correct_answer` (gold = answer.lower().strip()):
- both strings go through `clean_str`; tokens are *sets* of whitespace tokens;
- per sample: precision/recall of token sets, F1 = 2PR/(P+R+1e-8), BLEU-1 from torchmetrics
  `BLEUScore(n_gram=1)` on the cleaned strings;
- a question is closed iff the cleaned gold answer is exactly "yes" or "no"; a gold "no" also
  accepts "not"; a closed answer is correct when its token recall >= 0.4;
- open-question accuracy counts open answers whose recall >= 0.75;
- every aggregate is a plain mean over samples (0 when its group is empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .normalize import improved_clean, multimedeval_clean, token_set

CLOSED_RECALL_THRESHOLD = 0.4  # task_families.py: `if closed_q_recall >= 0.4`
OPEN_ACCURACY_THRESHOLD = 0.75  # task_families.py: `if recall[idx] >= 0.75`
F1_EPSILON = 1e-8  # task_families.py: `/ (current_precision + current_recall + 1e-8)`

YES_NO_EN = ("yes", "no")
YES_NO_AR = ("نعم", "لا")
# improved mode: negations that also answer a gold "no" (MultiMedEval adds only "not")
NEGATIONS = {"no": ("not",), "لا": ("ليس", "ليست", "لايوجد", "not")}

METRIC_NAMES = (
    "bleu1",
    "closed_accuracy",
    "open_recall",
    "recall",
    "open_accuracy",
    "f1",
)


@dataclass(frozen=True)
class VQAScore:
    """Per-sample scores (kept in the predictions file)."""

    closed: bool
    bleu1: float
    precision: float
    recall: float
    f1: float
    closed_correct: bool | None  # None for open questions
    open_correct: bool | None  # None for closed questions


def bleu1(prediction: str, reference: str) -> float:
    """Sentence BLEU-1 as MultiMedEval computes it (torchmetrics, whitespace tokens, brevity penalty).

    torchmetrics' functional `bleu_score`: the same update/compute as MultiMedEval's `BLEUScore(n_gram=1)`
    module call (equal values, tests/unit/eval/test_eval_metrics_vqa.py), without the module's per-call
    state bookkeeping, which was most of a VQA sample's scoring time.
    """
    from torchmetrics.functional.text import bleu_score

    return float(bleu_score([prediction], [[reference]], n_gram=1).item())


def score_multimedeval(prediction: str, gold: str) -> VQAScore:
    """One sample, MultiMedEval's rules."""
    clean_gold = multimedeval_clean(gold.lower().strip())
    clean_pred = multimedeval_clean(prediction)
    closed = clean_gold in YES_NO_EN
    return _score(clean_pred, clean_gold, closed, extra_negations={"no": ("not",)})


def score_improved(prediction: str, gold: str, answer_type: str | None) -> VQAScore:
    """One sample, improved rules: closed = the dataset's answer type is CLOSED (or, when the dataset
    has no type, a yes/no gold in English or Arabic); Arabic folded before MultiMedEval's cleaning."""
    clean_gold = improved_clean(gold.lower().strip())
    clean_pred = improved_clean(prediction)
    if answer_type:
        closed = answer_type.strip().upper() == "CLOSED"
    else:
        closed = clean_gold in YES_NO_EN or clean_gold in YES_NO_AR
    return _score(clean_pred, clean_gold, closed, extra_negations=NEGATIONS)


def _score(clean_pred: str, clean_gold: str, closed: bool, extra_negations: dict[str, tuple[str, ...]]) -> VQAScore:
    pred_tokens, gold_tokens = token_set(clean_pred), token_set(clean_gold)
    common = len(pred_tokens & gold_tokens)
    precision = common / len(pred_tokens) if pred_tokens else 0.0
    recall = common / len(gold_tokens) if gold_tokens else 0.0
    f1 = 2 * (precision * recall) / (precision + recall + F1_EPSILON)
    closed_correct = open_correct = None
    if closed:
        # MultiMedEval: a gold {"no"} becomes {"no", "not"}, then recall over that set. Generalised to
        # several negation words (improved mode) as one extra slot any of them fills.
        negations = extra_negations.get(next(iter(gold_tokens)), ()) if len(gold_tokens) == 1 else ()
        hits = len(pred_tokens & gold_tokens) + (1 if negations and pred_tokens & set(negations) else 0)
        size = len(gold_tokens) + (1 if negations else 0)
        closed_recall = hits / size if size else 0.0
        closed_correct = closed_recall >= CLOSED_RECALL_THRESHOLD
    else:
        open_correct = recall >= OPEN_ACCURACY_THRESHOLD
    return VQAScore(closed, bleu1(clean_pred, clean_gold), precision, recall, f1, closed_correct, open_correct)


def aggregate(scores: Sequence[VQAScore]) -> dict[str, float]:
    """Dataset-level metrics (fractions in [0, 1]); names as in the paper's Table 5."""

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    closed = [s for s in scores if s.closed]
    open_ = [s for s in scores if not s.closed]
    return {
        "bleu1": mean([s.bleu1 for s in scores]),
        "closed_accuracy": mean([1.0 if s.closed_correct else 0.0 for s in closed]),
        "open_recall": mean([s.recall for s in open_]),
        "recall": mean([s.recall for s in scores]),
        "open_accuracy": mean([1.0 if s.open_correct else 0.0 for s in open_]),
        "f1": mean([s.f1 for s in scores]),
        "n": float(len(scores)),
        "n_closed": float(len(closed)),
        "n_open": float(len(open_)),
    }


def yes_no_instruction(gold: str) -> bool:
    """MultiMedEval's prompt rule (vqa.py `format_question`): the raw gold answer is exactly
    "yes" or "no" -> prefix "Answer the following question with yes or no. "."""
    return gold in YES_NO_EN
