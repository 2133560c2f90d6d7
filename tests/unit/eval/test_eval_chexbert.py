"""CheXbert similarity (MultiMedEval's recipe) with a tiny CheXbert-layout checkpoint built here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.fakes.clinical_scorers import save_tiny_chexbert

from bimedix2.errors import EvalDataError
from bimedix2.eval.metrics.chexbert import CheXbertEncoder
from bimedix2.eval.runner import RunConfig, load_results, run_eval

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"


@pytest.fixture(scope="module")
def chexbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chexbert(tmp_path_factory.mktemp("chexbert"))


def test_similarity_matches_a_direct_computation(chexbert_dir: Path) -> None:
    from transformers import BertConfig, BertModel

    enc = CheXbertEncoder(chexbert_dir)
    pred, ref = "the heart is normal in size .", "no pleural effusion , lungs are clear ."
    (sim,) = enc.similarity([pred], [ref])
    direct = BertModel(BertConfig.from_pretrained(chexbert_dir))  # rebuilt from the checkpoint by hand
    state = torch.load(chexbert_dir / "chexbert.pth", weights_only=True)["model_state_dict"]
    direct.load_state_dict(
        {k[len("module.bert.") :]: v for k, v in state.items() if k.startswith("module.bert.")}, strict=False
    )
    direct.eval()
    vec = [direct(torch.tensor([enc.encode_ids(t)]))[0][0, 0] for t in (ref, pred)]
    assert sim == pytest.approx(torch.cosine_similarity(vec[0], vec[1], dim=0).item(), abs=1e-5)
    assert enc.similarity([pred], [pred]) == [pytest.approx(1.0, abs=1e-5)]
    assert not torch.allclose(enc.vectors([pred])[0], enc.vectors([ref])[0])  # different reports, different vectors


def test_tokenization_rules(chexbert_dir: Path) -> None:
    enc = CheXbertEncoder(chexbert_dir)
    assert enc.encode_ids("  the heart\n\nis   normal ") == enc.encode_ids("the heart is normal")
    assert enc.encode_ids("") == [2, 3]  # [CLS][SEP]
    long = enc.encode_ids("heart " * 700)
    assert len(long) == 512 and long[0] == 2 and long[-1] == 3
    batch = enc.vectors(["heart", "the heart is normal in size ."], batch_size=2)
    alone = enc.vectors(["heart"])
    assert torch.allclose(batch[0], alone[0], atol=1e-5)  # padding does not change a report's vector


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="chexbert.pth"):
        CheXbertEncoder(tmp_path)
    (tmp_path / "chexbert.pth").write_bytes(b"")
    with pytest.raises(EvalDataError, match="vocab.txt"):
        CheXbertEncoder(tmp_path)


def test_summarization_with_chexbert(tiny_engine, chexbert_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = RunConfig(
        out_dir=tmp_path,
        model="tiny-llava",
        data={"mimic-iii-summarization": str(FIX / "mimic-iii")},
        max_new_tokens=4,
        clinical_models={"chexbert": str(chexbert_dir)},
    )
    entry = load_results(run_eval(["mimic-iii-summarization"], tiny_engine, cfg))["tasks"]["mimic-iii-summarization"]
    assert -1.0 <= entry["metrics"]["chexbert_similarity"] <= 1.0
    assert "chexbert_similarity" not in entry["unavailable"] and entry["metrics"]["f1_radgraph"] is None
