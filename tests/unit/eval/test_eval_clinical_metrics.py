"""F1-RadGraph, BERTScore and RadCliQ-v1: hand-computed rules, the real libraries on tiny random models laid
out like the released ones, and a report task end to end with every clinical metric."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from tests.fakes.clinical_scorers import save_tiny_chexbert, save_tiny_distilroberta, save_tiny_radgraph
from transformers import BertTokenizer

from bimedix2.errors import EvalDataError
from bimedix2.eval.metrics.bertscore import BERTScore
from bimedix2.eval.metrics.radcliq import COEFS, MEAN, SCALE, radcliq_v1
from bimedix2.eval.metrics.radgraph import RadGraphScorer, partial_reward, resolve_model_dir
from bimedix2.eval.metrics.text import bleu
from bimedix2.eval.metrics.tokenizer_compat import legacy_tokenizer_api
from bimedix2.eval.runner import RunConfig, load_results, run_eval

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "eval"
PREDS = ["moderate hiatal hernia .", "", "left lung opacity", "the heart size is normal ."]
REFS = ["moderate hiatal hernia . no pleural effusion .", "no acute process", "left lung opacity", "lungs are clear ."]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scorers")
    return {
        "radgraph": save_tiny_radgraph(root / "rg"),
        "chexbert": save_tiny_chexbert(root / "chexbert"),
        "bertscore": save_tiny_distilroberta(root / "roberta"),
    }


@pytest.fixture(scope="module")
def radgraph(models: dict[str, Path]) -> RadGraphScorer:
    return RadGraphScorer(models["radgraph"])


def _entity(tokens: str, label: str, relations: list | None = None) -> dict:
    return {"tokens": tokens, "label": label, "start_ix": 0, "end_ix": 0, "relations": relations or []}


def test_partial_reward_by_hand() -> None:
    # MultiMedEval's rule: entities without relations compare as (tokens, label); entities with at least one
    # relation as (tokens, label, True), whatever the relation is.
    hyp = {
        "entities": {
            "1": _entity("hernia", "OBS-DP"),
            "2": _entity("hiatal", "ANAT-DP"),
            "3": _entity("effusion", "OBS-DA", [["located_at", "4"]]),
            "4": _entity("pleural", "ANAT-DP"),
        }
    }
    ref = {
        "entities": {
            "1": _entity("hernia", "OBS-DP"),
            "2": _entity("hiatal", "ANAT-DP", [["modify", "1"]]),  # has a relation here, not in hyp: no match
            "3": _entity("effusion", "OBS-DA", [["suggestive_of", "1"]]),  # other relation, still a match
            "4": _entity("pleural", "ANAT-DP"),
            "5": _entity("opacity", "OBS-DP"),
        }
    }
    # matches: hernia, effusion(+rel), pleural = 3; precision 3/4, recall 3/5, F1 = 2*.75*.6/1.35
    assert partial_reward(hyp, ref) == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert partial_reward(hyp, hyp) == 1.0
    assert partial_reward({"entities": {}}, ref) == 0.0


def test_radcliq_v1_by_hand() -> None:
    at_mean = radcliq_v1(*([m] for m in MEAN))
    assert at_mean == [pytest.approx(2.46655256e-10, abs=1e-12)]  # the intercept
    one_sd_radgraph = radcliq_v1([MEAN[0] + SCALE[0]], [MEAN[1]], [MEAN[2]], [MEAN[3]])
    assert one_sd_radgraph == [pytest.approx(COEFS[0], abs=1e-9)]  # -0.377...: better RadGraph, fewer errors
    perfect, poor = radcliq_v1([1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0])
    # (1 - m) / s weighted: -0.377*1.5261 - 0.370*1.7049 - 0.2526*0.9261 (BLEU's weight is ~0)
    assert perfect == pytest.approx(-0.377083683 * 1.52619 - 0.3703001 * 1.70492 - 0.252616218 * 0.92608, abs=1e-4)
    assert poor > perfect
    with pytest.raises(ValueError, match="differ in length"):
        radcliq_v1([1.0], [1.0, 0.5], [1.0], [1.0])


def test_legacy_tokenizer_api_is_scoped(models: dict[str, Path]) -> None:
    tok = BertTokenizer.from_pretrained(models["chexbert"])
    assert not hasattr(tok, "encode_plus")
    with legacy_tokenizer_api():
        assert tok.build_inputs_with_special_tokens([7, 8]) == [tok.cls_token_id, 7, 8, tok.sep_token_id]
        assert tok.encode_plus("heart")["input_ids"] == tok("heart")["input_ids"]
    assert not hasattr(tok, "encode_plus") and not hasattr(tok, "build_inputs_with_special_tokens")


def test_radgraph_f1_is_the_partial_reward_of_its_annotations(radgraph: RadGraphScorer) -> None:
    assert radgraph.model_type == "radgraph"
    graphs = radgraph.annotate(["moderate hiatal hernia .", "left lung opacity"])
    assert graphs[0]["text"] == "moderate hiatal hernia ." and graphs[0]["entities"]
    entity = next(iter(graphs[0]["entities"].values()))
    assert {"tokens", "label", "relations"} <= set(entity) and entity["label"] in {
        "ANAT-DP",
        "OBS-DP",
        "OBS-DA",
        "OBS-U",
    }
    scores = radgraph.f1(PREDS, REFS)
    hyp, ref = radgraph.annotate([PREDS[0], REFS[0]])
    assert scores[0] == pytest.approx(partial_reward(hyp, ref))
    assert scores[1] == 0.0  # empty prediction: 0, not an error
    assert scores[2] == 1.0  # the same report on both sides
    assert all(0.0 <= s <= 1.0 for s in scores)
    # an Arabic answer to an English reference (a bilingual model's slip) is scored, not an error
    (arabic,) = radgraph.f1(["انصباب جنبي أيسر ."], [REFS[0]])
    assert 0.0 <= arabic <= 1.0


def test_radgraph_model_paths(models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIMEDIX2_CACHE_DIR", str(tmp_path / "cache"))
    archive = tmp_path / "radgraph.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(models["radgraph"], arcname="radgraph")
    model_type, directory = resolve_model_dir(archive)
    assert model_type == "radgraph" and (directory / "weights.th").is_file()
    assert resolve_model_dir(archive)[1] == directory  # extracted once, reused
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(EvalDataError, match="weights.th"):
        resolve_model_dir(broken)
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(EvalDataError, match="bad.tar.gz"):
        resolve_model_dir(tmp_path / "bad.tar.gz")
    with pytest.raises(EvalDataError, match="not found"):
        resolve_model_dir(tmp_path / "nowhere")
    # the encoder named in config.json is not available offline: say which file names it
    offline = tmp_path / "offline"
    offline.mkdir()
    for item in ("weights.th", "vocabulary"):
        (offline / item).symlink_to(models["radgraph"] / item)
    config = json.loads((models["radgraph"] / "config.json").read_text())
    config["dataset_reader"]["token_indexers"]["bert"]["model_name"] = str(tmp_path / "no-such-encoder")
    (offline / "config.json").write_text(json.dumps(config))
    with pytest.raises(EvalDataError, match="offline"):
        RadGraphScorer(offline)


def test_bertscore_equals_bert_score_itself(models: dict[str, Path]) -> None:
    import bert_score
    from bert_score import BERTScorer

    preds, refs = PREDS[:1] + PREDS[2:], REFS[:1] + REFS[2:]
    ours = BERTScore(models["bertscore"])
    f1, rescaled = ours.f1(preds, refs)
    baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / "distilroberta-base.tsv"
    with legacy_tokenizer_api():  # MultiMedEval's call, with the model path in place of the hub name
        theirs = BERTScorer(
            model_type=str(models["bertscore"]),
            num_layers=5,
            lang="en",
            rescale_with_baseline=True,
            baseline_path=str(baseline),
            idf=True,
            idf_sents=preds,
        )
        _, _, expected = theirs.score(preds, refs)
    assert rescaled == pytest.approx(expected.tolist(), abs=1e-5)
    assert f1[1] == pytest.approx(1.0, abs=1e-5) and f1[0] != pytest.approx(f1[2])
    (arabic,), _ = ours.f1(["انصباب جنبي أيسر ."], [REFS[0]])  # byte-level BPE: any script is scored
    assert -1.0 <= arabic <= 1.0 and arabic != pytest.approx(1.0)
    with pytest.raises(EvalDataError, match="config.json"):
        BERTScore(models["bertscore"].parent / "missing")


def _summarize(engine, out: Path, models: dict[str, Path]) -> dict:  # noqa: ANN001
    """Run the MIMIC-III summarization task on the fixture with these scoring models; its results entry."""
    cfg = RunConfig(
        out_dir=out,
        model="tiny-llava",
        data={"mimic-iii-summarization": str(FIX / "mimic-iii")},
        max_new_tokens=4,
        clinical_models={k: str(v) for k, v in models.items()},
    )
    return load_results(run_eval(["mimic-iii-summarization"], engine, cfg))["tasks"]["mimic-iii-summarization"]


def test_report_task_with_every_clinical_metric(tiny_engine, models: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    entry = _summarize(tiny_engine, tmp_path, models)
    assert entry["unavailable"] == {}
    rows = [json.loads(line) for line in (tmp_path / entry["predictions"]).read_text().splitlines()]
    for name in ("f1_radgraph", "chexbert_similarity", "bertscore", "radcliq"):
        assert entry["metrics"][name] == pytest.approx(sum(r[name] for r in rows) / len(rows))
    # the stored RadCliQ is the v1 model of the stored inputs (BERTScore rescaled, BLEU-2 recomputed)
    _, rescaled = BERTScore(models["bertscore"]).f1([r["prediction"] for r in rows], [r["reference"] for r in rows])
    expected = radcliq_v1(
        [r["f1_radgraph"] for r in rows],
        rescaled,
        [r["chexbert_similarity"] for r in rows],
        [bleu(r["prediction"], r["reference"], 2) for r in rows],
    )
    assert [r["radcliq"] for r in rows] == pytest.approx(expected, abs=1e-6)


def test_radcliq_is_unavailable_without_all_three(tiny_engine, models: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    entry = _summarize(tiny_engine, tmp_path, {"radgraph": models["radgraph"]})
    assert 0.0 <= entry["metrics"]["f1_radgraph"] <= 1.0
    assert entry["metrics"]["radcliq"] is None and "all three" in entry["unavailable"]["radcliq"]
    assert set(entry["unavailable"]) == {"chexbert_similarity", "bertscore", "radcliq"}


def test_cli_takes_scoring_models_from_config(
    tiny_llava_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bimedix2.cli import main

    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        f"tasks: [mimic-iii-summarization]\ndata: {{mimic-iii-summarization: {FIX / 'mimic-iii'}}}\n"
        f"radgraph: {tmp_path / 'no-radgraph.tar.gz'}\n"
    )
    rc = main(["eval", "run", "--config", str(cfg), "--model", str(tiny_llava_path), "--out", str(tmp_path / "o")])
    assert rc == 2 and "RadGraph model not found" in capsys.readouterr().err
    assert not (tmp_path / "o" / "mimic-iii-summarization" / "predictions.jsonl").exists()  # nothing generated
