"""CheXbert vector similarity, as MultiMedEval computes it, from a local CheXbert checkpoint.

MultiMedEval (multimedeval/chexbert/label.py `encode`, models/bert_encoder.py, bert_tokenizer.py):
a bert-base-uncased encoder with CheXbert's fine-tuned weights (`chexbert.pth`, key
`model_state_dict`, prefixed `module.`); each report is stripped, newlines and runs of spaces
collapsed, WordPiece-tokenized ([CLS] ... [SEP], cut at 512 tokens, an empty report is
[CLS][SEP]); the vector is the last layer's [CLS] hidden state; similarity = cosine of the
reference and generated vectors, averaged over samples.

The user points to a directory holding `chexbert.pth` and the bert-base-uncased tokenizer files
(`vocab.txt`; a `config.json` too when the encoder is not bert-base). Nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from ...errors import EvalDataError

MAX_TOKENS = 512
PAD_ID = 0  # MultiMedEval chexbert/constants.py PAD_IDX


def _clean(report: str) -> str:
    return re.sub(r"\s+", " ", report.strip().replace("\n", " ")).strip()


class CheXbertEncoder:
    """Loads CheXbert's BERT from `directory` once; `vectors(texts)` gives [CLS] embeddings."""

    def __init__(self, directory: Path, device: str = "cpu"):
        from transformers import BertConfig, BertModel, BertTokenizer

        directory = Path(directory)
        checkpoint = directory / "chexbert.pth"
        if not checkpoint.is_file():
            raise EvalDataError(f"CheXbert checkpoint not found: {checkpoint} (download chexbert.pth there)")
        if not (directory / "vocab.txt").is_file():
            raise EvalDataError(f"bert-base-uncased tokenizer not found: {directory / 'vocab.txt'}")
        config = BertConfig.from_pretrained(directory) if (directory / "config.json").is_file() else BertConfig()
        self.tokenizer = BertTokenizer.from_pretrained(directory)
        self.model = BertModel(config, add_pooling_layer=True)
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model_state_dict"]
        except (KeyError, RuntimeError, OSError) as exc:
            raise EvalDataError(f"{checkpoint}: not a CheXbert checkpoint with 'model_state_dict' ({exc})") from exc
        bert = {
            k.removeprefix("module.").removeprefix("bert."): v
            for k, v in state.items()
            if k.removeprefix("module.").startswith("bert.")
        }
        missing, unexpected = self.model.load_state_dict(bert, strict=False)
        unexpected = [k for k in unexpected if k != "embeddings.position_ids"]  # a buffer older transformers saved
        if missing or unexpected:
            raise EvalDataError(
                f"{checkpoint}: weights do not fit the BERT encoder "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        self.model.eval().to(device)
        self.device = device

    def encode_ids(self, report: str) -> list[int]:
        """MultiMedEval's tokenization of one report."""
        tokens = self.tokenizer.tokenize(_clean(report))
        if not tokens:
            return [self.tokenizer.cls_token_id, self.tokenizer.sep_token_id]
        # MultiMedEval's `encode_plus(tokens)` (gone in transformers 5): [CLS] + ids + [SEP]
        ids = [self.tokenizer.cls_token_id, *self.tokenizer.convert_tokens_to_ids(tokens), self.tokenizer.sep_token_id]
        return ids[: MAX_TOKENS - 1] + [self.tokenizer.sep_token_id] if len(ids) > MAX_TOKENS else ids

    @torch.inference_mode()
    def vectors(self, reports: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """[CLS] hidden states of the last layer, one row per report."""
        rows = []
        for start in range(0, len(reports), batch_size):
            ids = [torch.tensor(self.encode_ids(r)) for r in reports[start : start + batch_size]]
            padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=PAD_ID).to(self.device)
            mask = torch.zeros_like(padded)
            for i, row in enumerate(ids):
                mask[i, : len(row)] = 1
            rows.append(self.model(padded, attention_mask=mask)[0][:, 0, :].float().cpu())
        return torch.cat(rows) if rows else torch.empty(0)

    def similarity(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        """Per-sample cosine similarity of CheXbert vectors."""
        return torch.cosine_similarity(self.vectors(references), self.vectors(predictions)).tolist()
