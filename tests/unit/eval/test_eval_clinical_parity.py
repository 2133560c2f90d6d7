"""The toolkit's clinical report metrics equal the field's own implementations on the same tiny random weights.

One fixed set of English radiology report pairs (identical, empty on either or both sides, reworded,
contradicting, and an Arabic answer to an English reference) is scored by the toolkit and by each scorer package's own public API:

- F1-RadGraph vs `radgraph.F1RadGraph` (the radgraph package MultiMedEval used until it vendored the
  same code), reward level "partial" as MultiMedEval: exact equality (same model, same batch-of-one
  inference, same reward function; nothing is re-ordered).
- CheXbert vs `f1chexbert` (unmodified, run in a child process: tests/fakes/f1chexbert_reference.py):
  token ids and batch-of-one [CLS] vectors exactly equal; the similarity, which the toolkit computes on
  padded batches of 16, to 1e-6 (padding changes the float summation order; measured max |diff| of the
  vectors ~6e-8).
- RadCliQ-v1 vs CXR-Report-Metric's released model (`radcliq-v1.pkl`: an sklearn StandardScaler, then
  `[x, 1] @ coefs`), re-implemented here with sklearn's StandardScaler on inputs computed by the four
  packages (F1RadGraph, bert_score, f1chexbert, torchmetrics BLEU-2 as MultiMedEval): to 1e-6 (the
  BERTScore input carries bert_score's own float32 arithmetic; the formula itself agrees to ~1e-15).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.fakes.clinical_scorers import save_tiny_chexbert, save_tiny_distilroberta, save_tiny_radgraph
from tests.fakes.f1chexbert_reference import run_f1chexbert

from bimedix2.eval.metrics import radcliq
from bimedix2.eval.metrics.chexbert import CheXbertEncoder
from bimedix2.eval.metrics.clinical import ClinicalScorers
from bimedix2.eval.metrics.radgraph import RadGraphScorer
from bimedix2.eval.metrics.tokenizer_compat import legacy_tokenizer_api

PAIRS = [  # (generated, reference)
    ("moderate hiatal hernia . no pleural effusion .", "moderate hiatal hernia . no pleural effusion ."),
    ("", "no acute cardiopulmonary process ."),
    ("left lung opacity .", ""),
    ("", ""),
    ("the heart size is normal . lungs are clear .", "heart size is normal . no pleural effusion ."),
    ("right lower lobe pneumonia .", "left lower lobe pneumonia . moderate hiatal hernia ."),
    ("No evidence of acute cardiopulmonary process.", "no evidence of acute cardiopulmonary process"),
    ("  there is a left\n\npleural   effusion . ", "small right pleural effusion and left lower lobe opacity ."),
    ("انصباب جنبي أيسر .", "left pleural effusion ."),  # a bilingual model answering in Arabic
]
PREDS = [p for p, _ in PAIRS]
REFS = [r for _, r in PAIRS]

# CXR-Report-Metric CXRMetric/radcliq-v1.pkl @ 9c9ecad, read with pickletools (float64 reprs): the
# StandardScaler's mean_, scale_, var_, and the coefficients with the intercept last.
RELEASED_MEAN = [0.5379231241355762, 0.6175725628125001, 0.7647942121140658, 0.44738335396242174]
RELEASED_SCALE = [0.3028258411486429, 0.22430938459304575, 0.2539439110169773, 0.2989271671041838]
RELEASED_VAR = [0.09170349006738311, 0.05031470001651091, 0.06448750994259847, 0.08935745123293264]
RELEASED_COEFS = [
    -0.37708368261038905,
    -0.37030009974480316,
    -0.25261621789593225,
    4.315048405024756e-12,
    2.466552561323256e-10,
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parity")
    return {
        "radgraph": save_tiny_radgraph(root / "rg"),
        "chexbert": save_tiny_chexbert(root / "chexbert"),
        "bertscore": save_tiny_distilroberta(root / "roberta"),
    }


@pytest.fixture(scope="module")
def radgraph(models: dict[str, Path]) -> RadGraphScorer:
    return RadGraphScorer(models["radgraph"])


@pytest.fixture(scope="module")
def radgraph_package(radgraph: RadGraphScorer) -> tuple[list[float], list[float], list[float]]:
    """(simple, partial, complete) per pair from radgraph's own F1RadGraph on the same model directory."""
    from radgraph import F1RadGraph

    with legacy_tokenizer_api():
        scorer = F1RadGraph(reward_level="all", model_type="radgraph", model_cache_dir=radgraph._links.name, cuda=-1)
        _, rewards, _, _ = scorer(refs=REFS, hyps=PREDS)
        _, partial, _, _ = F1RadGraph(
            reward_level="partial", model_type="radgraph", model_cache_dir=radgraph._links.name, cuda=-1
        )(refs=REFS, hyps=PREDS)
    assert list(partial) == list(rewards[1])
    return rewards


@pytest.fixture(scope="module")
def f1chexbert(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    reports = [*PREDS, *REFS]
    return run_f1chexbert(models["chexbert"], reports, tmp_path_factory.mktemp("f1chexbert"))


def test_f1_radgraph_equals_the_radgraph_package(radgraph: RadGraphScorer, radgraph_package: tuple) -> None:
    simple, partial, complete = radgraph_package
    ours = radgraph.f1(PREDS, REFS)
    assert ours == list(partial)  # exact
    assert ours[0] == 1.0 and ours[1] == ours[2] == ours[3] == 0.0  # identical; empty on either side
    assert 0.0 < ours[5] < 1.0  # a pair the tiny model scores in between
    # the reward level matters on these pairs, so this test would catch the toolkit using another one
    assert ours != list(simple) or ours != list(complete)


def test_chexbert_equals_f1chexbert(models: dict[str, Path], f1chexbert: dict[str, list]) -> None:
    enc = CheXbertEncoder(models["chexbert"])
    reports = [*PREDS, *REFS]
    assert [enc.encode_ids(r) for r in reports] == f1chexbert["ids"]
    long = "heart " * 700  # longer than 512 tokens: both cut to 511 + [SEP]
    assert len(enc.encode_ids(long)) == 512
    theirs = torch.tensor(f1chexbert["vectors"])
    assert torch.equal(enc.vectors(reports, batch_size=1), theirs)  # bit for bit
    n = len(PAIRS)
    expected = torch.cosine_similarity(theirs[n:], theirs[:n]).tolist()  # cos(reference, generated)
    assert enc.similarity(PREDS, REFS) == pytest.approx(expected, abs=1e-6)
    assert enc.similarity(PREDS, REFS)[0] == pytest.approx(1.0, abs=1e-6)


def _released_radcliq_v1(columns: np.ndarray) -> np.ndarray:
    """CXR-Report-Metric's CompositeMetric.predict with its released scaler and coefficients."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.var_ = (np.array(v) for v in (RELEASED_MEAN, RELEASED_SCALE, RELEASED_VAR))
    scaler.n_features_in_, scaler.n_samples_seen_ = 4, 160
    norm = scaler.transform(columns)
    return np.concatenate([norm, np.ones((norm.shape[0], 1))], axis=1) @ np.array(RELEASED_COEFS)


def test_radcliq_v1_equals_the_released_model(
    models: dict[str, Path], radgraph_package: tuple, f1chexbert: dict[str, list]
) -> None:
    import bert_score
    from bert_score import BERTScorer
    from torchmetrics.text import BLEUScore

    assert np.allclose(np.array(RELEASED_SCALE) ** 2, RELEASED_VAR, rtol=1e-12)  # the transcription is whole
    assert list(radcliq.MEAN) == RELEASED_MEAN and list(radcliq.SCALE) == RELEASED_SCALE
    assert [*radcliq.COEFS, radcliq.INTERCEPT] == RELEASED_COEFS

    # the four inputs, each from its own package, as MultiMedEval computes them
    f1_radgraph = list(radgraph_package[1])
    baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / "distilroberta-base.tsv"
    with legacy_tokenizer_api():
        scorer = BERTScorer(
            model_type=str(models["bertscore"]),
            num_layers=5,
            lang="en",
            rescale_with_baseline=True,
            baseline_path=str(baseline),
            idf=True,
            idf_sents=PREDS,
        )
        _, _, bertscore_rescaled = scorer.score(PREDS, REFS)
    vectors = torch.tensor(f1chexbert["vectors"])
    chexbert = torch.cosine_similarity(vectors[len(PAIRS) :], vectors[: len(PAIRS)]).tolist()
    bleu2 = [BLEUScore(n_gram=2, weights=[1 / 2, 1 / 2])([p], [[r]]).item() for p, r in PAIRS]
    columns = np.array([f1_radgraph, bertscore_rescaled.tolist(), chexbert, bleu2], dtype=np.float64).T
    expected = _released_radcliq_v1(columns)

    # the formula alone, on the same inputs
    assert radcliq.radcliq_v1(*columns.T) == pytest.approx(expected.tolist(), abs=1e-12)
    # the toolkit end to end: its own scorers on the same report pairs
    per_sample, unavailable = ClinicalScorers.load({k: str(v) for k, v in models.items()}).score(PREDS, REFS)
    assert unavailable == {}
    assert per_sample["radcliq"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert per_sample["f1_radgraph"] == f1_radgraph
    assert len(set(np.round(expected, 6))) > 3  # the pairs spread over the metric's range
