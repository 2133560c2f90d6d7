"""Vocabulary sizes come from the checkpoint, never assumed (BiMediX2-8B-Bi ships a larger tokenizer).

A tiny llava_llama checkpoint whose tokenizer has extra tokens (trained embedding rows for them),
or whose embedding is padded past its tokenizer, loads with every one of its own rows, answers,
and converts to an hf-llava checkpoint that gives the same greedy tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bimedix2.engine import Engine
from bimedix2.model.formats import get_format
from bimedix2.model.loader import load_model
from bimedix2.model.tiny import build_tiny_tokenizer, extra_vocabulary, save_tiny_llava_llama
from bimedix2.types import ImageRef, Message

from .test_format_contract import CPU, GREEDY, greedy_tokens

BASE = len(build_tiny_tokenizer(with_image_token=False))


@pytest.mark.parametrize(
    ("extra", "rows"),
    [(12, None), (0, BASE + 40)],
    ids=["larger-tokenizer", "padded-embedding"],
)
def test_llava_llama_keeps_the_checkpoints_own_vocabulary(
    tmp_path: Path, png_path: Path, extra: int, rows: int | None
) -> None:
    parts = save_tiny_llava_llama(tmp_path / "ckpt", seed=9, extra_tokens=extra, embedding_rows=rows)
    checkpoint_rows = rows or BASE + extra
    assert len(parts["tokenizer"]) == BASE + extra and parts["config"]["vocab_size"] == checkpoint_rows

    loaded = load_model(str(tmp_path / "ckpt"), CPU)
    image_id = loaded.image_token_id
    assert image_id == BASE + extra  # <image> appended after the checkpoint's own tokens
    expected_rows = max(checkpoint_rows, image_id + 1)  # grown by one only when no spare row exists
    embed = loaded.model.get_input_embeddings().weight
    assert embed.shape[0] == loaded.model.lm_head.weight.shape[0] == expected_rows
    assert loaded.model.config.text_config.vocab_size == expected_rows
    # every row of the checkpoint is its own (the extra tokens' included), nothing re-initialised
    assert torch.equal(embed[:checkpoint_rows], parts["llm"].model.embed_tokens.weight)
    assert torch.equal(loaded.model.lm_head.weight[:checkpoint_rows], parts["llm"].lm_head.weight)

    question = "What is seen? " + " ".join(extra_vocabulary(extra))
    ids = loaded.tokenizer(question, add_special_tokens=False).input_ids
    assert sum(i >= BASE for i in ids) == extra  # the added words are single tokens past the base vocabulary
    text_ids = torch.tensor([ids])
    with torch.no_grad():
        ours = loaded.model(input_ids=text_ids).logits[..., :checkpoint_rows]
        reference = parts["llm"](input_ids=text_ids).logits
    torch.testing.assert_close(ours, reference)

    messages = [Message("user", question, (ImageRef(png_path),))]
    reply = Engine(loaded).generate(messages, GREEDY)
    assert 1 <= reply.completion_tokens <= GREEDY.max_new_tokens

    converted_dir = get_format("llava-llama").convert(tmp_path / "ckpt", tmp_path / "hf", CPU)
    converted = load_model(str(converted_dir), CPU)
    assert converted.model.get_input_embeddings().weight.shape[0] == expected_rows
    assert len(converted.tokenizer) == len(loaded.tokenizer) and converted.image_token_id == image_id
    assert greedy_tokens(converted, messages) == greedy_tokens(loaded, messages)
    assert Engine(converted).generate(messages, GREEDY) == reply


def test_a_tokenizer_larger_than_the_embedding_is_refused_by_the_builder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than the tokenizer"):
        save_tiny_llava_llama(tmp_path / "bad", extra_tokens=4, embedding_rows=BASE)
