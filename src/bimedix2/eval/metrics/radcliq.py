"""RadCliQ-v1: the composite of CXR-Report-Metric (Yu et al., Patterns 2023), as MultiMedEval applies it.

RadCliQ-v1 is a linear model over four standardised per-report metrics, predicting the number of
clinically significant errors a radiologist would find (lower is better):

    radcliq = sum_i coef_i * (x_i - mean_i) / scale_i + intercept,  x = [F1-RadGraph, BERTScore,
                                                                        CheXbert similarity, BLEU-2]

MultiMedEval (multimedeval/report_comparison_utils.py `compute_composite`) feeds it its partial-reward
F1-RadGraph, the baseline-rescaled BERTScore F1, the CheXbert vector similarity and BLEU-2, per sample,
and averages. The scaler and coefficients below are those of CXR-Report-Metric's `radcliq-v1.pkl`
as written out in RadEval (github.com/jbdel/RadEval, radcliq.py); var_ = scale_**2 there, a check
on the transcription.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEATURES = ("f1_radgraph", "bertscore_rescaled", "chexbert_similarity", "bleu2")
MEAN = np.array([0.53792312, 0.61757256, 0.76479421, 0.44738335])
SCALE = np.array([0.30282584, 0.22430938, 0.25394391, 0.29892717])
COEFS = np.array([-3.77083683e-01, -3.70300100e-01, -2.52616218e-01, 4.31504841e-12])
INTERCEPT = 2.46655256e-10


def radcliq_v1(
    f1_radgraph: Sequence[float],
    bertscore_rescaled: Sequence[float],
    chexbert_similarity: Sequence[float],
    bleu2: Sequence[float],
) -> list[float]:
    """Per-sample RadCliQ-v1 from the four per-sample metrics (equal lengths)."""
    columns = [np.asarray(c, dtype=np.float64) for c in (f1_radgraph, bertscore_rescaled, chexbert_similarity, bleu2)]
    if len({len(c) for c in columns}) != 1:
        raise ValueError(f"RadCliQ inputs differ in length: {[len(c) for c in columns]}")
    x = np.stack(columns, axis=1)
    return ((x - MEAN) / SCALE @ COEFS + INTERCEPT).tolist()
