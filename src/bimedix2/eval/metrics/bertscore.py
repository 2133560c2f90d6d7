"""BERTScore F1 as MultiMedEval computes it, from a local distilroberta-base, through `bert_score`.

MultiMedEval (multimedeval/report_comparison_utils.py `compute_bertscore`): `BERTScorer(
model_type="distilroberta-base", lang="en", idf=True, idf_sents=<generated reports>)`, i.e. layer 5
(bert_score's default for that model), idf weights from the generated reports, F1 of (generated,
reference); reported unrescaled as "f1-bertscore", and rescaled with bert_score's shipped English
baseline as RadCliQ's input. The user points to a directory holding distilroberta-base
(config.json, weights, vocab.json, merges.txt); nothing is downloaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from ...errors import EvalDataError
from .tokenizer_compat import legacy_tokenizer_api

MODEL = "distilroberta-base"


class BERTScore:
    """Loads the encoder once; `f1` scores (prediction, reference) pairs."""

    def __init__(self, directory: Path, device: str = "cpu", batch_size: int = 64):
        import bert_score
        from bert_score import BERTScorer
        from bert_score.utils import model2layers

        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise EvalDataError(f"BERTScore model not found: {directory / 'config.json'} (a local {MODEL} directory)")
        self.batch_size = batch_size
        baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{MODEL}.tsv"
        try:
            with legacy_tokenizer_api():
                self.scorer = BERTScorer(
                    model_type=str(directory),
                    num_layers=model2layers[MODEL],
                    lang="en",
                    idf=True,
                    baseline_path=str(baseline),
                    device=device,
                )
        except (OSError, ValueError) as exc:
            raise EvalDataError(f"{directory}: not a loadable {MODEL} model ({exc})") from exc

    def f1(self, predictions: Sequence[str], references: Sequence[str]) -> tuple[list[float], list[float]]:
        """(unrescaled F1, baseline-rescaled F1) per sample; idf weights come from `predictions`."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if not predictions:
            return [], []
        with legacy_tokenizer_api(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Overwriting the previous importance weights")
            self.scorer.compute_idf(list(predictions))
            _, _, f1 = self.scorer.score(list(predictions), list(references), batch_size=self.batch_size)
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            base = float(self.scorer.baseline_vals[2])
        rescaled = (f1 - base) / (1 - base)  # bert_score's own rescaling (BERTScorer.score), applied to F1
        return f1.tolist(), rescaled.tolist()
