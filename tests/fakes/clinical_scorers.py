"""Tiny random stand-ins for the report-scoring models, laid out exactly like the released ones.

- `save_tiny_radgraph(dir)`: the radgraph package's model directory (config.json, vocabulary/,
  weights.th) for model type "radgraph", with a 1-layer BERT encoder saved beside it.
- `save_tiny_chexbert(dir)`: bert config + vocab + `chexbert.pth` as released (DataParallel `module.`
  prefix, a stale position_ids buffer, the 14 linear heads).
- `save_tiny_distilroberta(dir)`: a RoBERTa encoder + byte-level BPE tokenizer directory with the
  5 layers BERTScore reads from distilroberta-base.
Random weights give meaningless but deterministic scores: enough to run the real code paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = (
    "no evidence of acute cardiopulmonary process moderate hiatal hernia pleural effusion left right lung "
    "opacity heart size is normal there a the and lobe pneumonia clear lungs are"
).split()
NER_LABELS = ("ANAT-DP", "OBS-DP", "OBS-DA", "OBS-U")
RELATION_LABELS = ("located_at", "modify", "suggestive_of")


def save_tiny_radgraph(out_dir: Path, seed: int = 0) -> Path:
    """Write a random RadGraph ("radgraph" type) model to `out_dir/radgraph`; returns that directory."""
    from dotmap import DotMap
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie
    from transformers import BertConfig, BertModel, BertTokenizer

    from bimedix2.eval.metrics.tokenizer_compat import legacy_tokenizer_api

    encoder = out_dir / "encoder"
    encoder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *".,:;()-/"]
    (encoder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(encoder / "vocab.txt")).save_pretrained(encoder)
    torch.manual_seed(seed)
    bert = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(bert).save_pretrained(encoder)

    model_dir = out_dir / "radgraph"
    (model_dir / "vocabulary").mkdir(parents=True, exist_ok=True)
    # allennlp label namespaces: the empty string is DyGIE's "no label" entry, first.
    (model_dir / "vocabulary" / "radgraph__ner_labels.txt").write_text("\n".join(["", *NER_LABELS]) + "\n")
    (model_dir / "vocabulary" / "radgraph__relation_labels.txt").write_text("\n".join(["", *RELATION_LABELS]) + "\n")
    (model_dir / "vocabulary" / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    bert_params = {"type": "pretrained_transformer_mismatched", "model_name": str(encoder), "max_length": 128}
    config = {
        "dataset_reader": {"type": "dygie", "max_span_width": 4, "token_indexers": {"bert": bert_params}},
        "model": {
            "type": "dygie",
            "embedder": {"token_embedders": {"bert": bert_params}},
            "feature_size": 8,
            "feedforward_params": {"num_layers": 1, "hidden_dims": 16, "dropout": 0.0},
            "initializer": {},
            "module_initializer": {},
            "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "max_span_width": 4,
            "modules": {
                "coref": {"coref_prop": 0, "max_antecedents": 10, "spans_per_word": 0.3},
                "events": {
                    "argument_spans_per_word": 0.8,
                    "loss_weights": {"arguments": 1, "trigger": 0.2},
                    "trigger_spans_per_word": 0.3,
                },
                "ner": {},
                "relation": {"spans_per_word": 0.5},
            },
            "target_task": "relation",
        },
        "vocabulary": {},
    }
    (model_dir / "config.json").write_text(json.dumps(config, indent=1))
    params = DotMap(config).model
    for key in ("type", "embedder", "initializer", "module_initializer"):
        del params[key]
    with legacy_tokenizer_api():
        embedder = text_field_embedders.BasicTextFieldEmbedder(
            {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(encoder), max_length=128)}
        )
        model = dygie.DyGIE(
            vocab=Vocabulary.from_files(model_dir / "vocabulary", None, None), embedder=embedder, **params
        )
    torch.save(model.state_dict(), model_dir / "weights.th")
    return model_dir


def save_tiny_distilroberta(out_dir: Path, seed: int = 0) -> Path:
    """Write a random 5-layer RoBERTa + byte-level BPE tokenizer to `out_dir`; returns it."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    corpus = [" ".join(WORDS), "The heart size is normal. No pleural effusion.", "Left lower lobe pneumonia."]
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.save_model(str(out_dir))
    tokenizer = RobertaTokenizer(str(out_dir / "vocab.json"), str(out_dir / "merges.txt"), model_max_length=128)
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=5,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
    )
    RobertaModel(config).save_pretrained(out_dir)
    return out_dir


def save_tiny_chexbert(directory: Path, seed: int = 0) -> Path:
    """Write a random CheXbert checkpoint (+ its bert config and vocab) to `directory`; returns it."""
    from transformers import BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), ".", ","]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=600,
    )
    config.save_pretrained(directory)
    torch.manual_seed(seed)
    bert = BertModel(config)
    state = {f"module.bert.{k}": v for k, v in bert.state_dict().items()}
    state["module.bert.embeddings.position_ids"] = torch.arange(600)[None]  # older transformers saved it
    for i in range(14):
        state[f"module.linear_heads.{i}.weight"] = torch.zeros(4 if i < 13 else 2, 32)
    torch.save({"model_state_dict": state, "epoch": 3}, directory / "chexbert.pth")
    return directory
