"""RadCliQ-v1: the composite of CXR-Report-Metric (Yu et al., Patterns 2023), as MultiMedEval applies it.

RadCliQ-v1 is a linear model over four standardised per-report metrics, predicting the number of
clinically significant errors a radiologist would find (lower is better):

    radcliq = sum_i coef_i * (x_i - mean_i) / scale_i + intercept,  x = [F1-RadGraph, BERTScore,
                                                                        CheXbert similarity, BLEU-2]

MultiMedEval (multimedeval/report_comparison_utils.py `compute_composite`) feeds it its partial-reward
F1-RadGraph, the baseline-rescaled BERTScore F1, the CheXbert vector similarity and BLEU-2, per sample,
and averages. The scaler (sklearn StandardScaler mean_/scale_) and the coefficients (last one the
intercept) below are the float64 values stored in CXR-Report-Metric's `CXRMetric/radcliq-v1.pkl`
(rajpurkarlab/CXR-Report-Metric @ 9c9ecad), read from the pickle's opcodes without unpickling it;
MultiMedEval's `radcliq-v1.dill` holds the same values bit for bit. Its input columns are in the order
CXR-Report-Metric's run_eval.py COLS names them: radgraph_combined, bertscore, semb_score, bleu_score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEATURES = ("f1_radgraph", "bertscore_rescaled", "chexbert_similarity", "bleu2")
MEAN = np.array([0.5379231241355762, 0.6175725628125001, 0.7647942121140658, 0.44738335396242174])
SCALE = np.array([0.3028258411486429, 0.22430938459304575, 0.2539439110169773, 0.2989271671041838])
COEFS = np.array([-0.37708368261038905, -0.37030009974480316, -0.25261621789593225, 4.315048405024756e-12])
INTERCEPT = 2.466552561323256e-10


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
