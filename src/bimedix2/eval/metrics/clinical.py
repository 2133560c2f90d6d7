"""Report-scoring models (F1-RadGraph, CheXbert similarity, BERTScore, RadCliQ-v1) from local paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError

CLINICAL_MODELS = ("radgraph", "chexbert", "bertscore")
CLINICAL_METRICS = ("f1_radgraph", "chexbert_similarity", "bertscore", "radcliq")
UNAVAILABLE = {
    "f1_radgraph": "unavailable: needs the RadGraph model (--radgraph PATH: radgraph package model dir or .tar.gz)",
    "chexbert_similarity": "unavailable: needs the CheXbert checkpoint (--chexbert DIR with chexbert.pth + vocab.txt)",
    "bertscore": "unavailable: needs distilroberta-base (--bertscore DIR)",
    "radcliq": "unavailable: needs all three of --radgraph, --chexbert and --bertscore",
}


@dataclass
class ClinicalScorers:
    """The report-scoring models the user pointed to (each None when not given)."""

    radgraph: Any = None
    chexbert: Any = None
    bertscore: Any = None

    @classmethod
    def load(cls, models: dict[str, str]) -> ClinicalScorers:
        """Load every model named in `models` (a bad path fails here, before any generation)."""
        unknown = sorted(set(models) - set(CLINICAL_MODELS))
        if unknown:
            raise ConfigError(f"unknown report-scoring model(s) {unknown}; known: {', '.join(CLINICAL_MODELS)}")
        out = cls()
        if "radgraph" in models:
            from .radgraph import RadGraphScorer

            out.radgraph = RadGraphScorer(Path(models["radgraph"]))
        if "chexbert" in models:
            from .chexbert import CheXbertEncoder

            out.chexbert = CheXbertEncoder(Path(models["chexbert"]))
        if "bertscore" in models:
            from .bertscore import BERTScore

            out.bertscore = BERTScore(Path(models["bertscore"]))
        return out

    def score(self, predictions: list[str], references: list[str]) -> tuple[dict[str, list[float]], dict[str, str]]:
        """Per-sample clinical metrics that can be computed, and why the others cannot."""
        from .text import bleu

        per_sample: dict[str, list[float]] = {}
        if self.radgraph is not None:
            per_sample["f1_radgraph"] = self.radgraph.f1(predictions, references)
        if self.chexbert is not None:
            per_sample["chexbert_similarity"] = self.chexbert.similarity(predictions, references)
        rescaled: list[float] = []
        if self.bertscore is not None:
            per_sample["bertscore"], rescaled = self.bertscore.f1(predictions, references)
        if self.radgraph is not None and self.chexbert is not None and self.bertscore is not None:
            from .radcliq import radcliq_v1

            bleu2 = [bleu(p, r, 2) for p, r in zip(predictions, references, strict=True)]
            per_sample["radcliq"] = radcliq_v1(
                per_sample["f1_radgraph"], rescaled, per_sample["chexbert_similarity"], bleu2
            )
        return per_sample, {k: why for k, why in UNAVAILABLE.items() if k not in per_sample}
