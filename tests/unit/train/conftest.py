"""Fixtures of the training tests: the parts stage 1 composes (a tiny Llama and a tiny CLIP tower)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a tiny Llama causal LM whose tokenizer has no pad token, as Llama-3.1's; a tiny CLIP vision tower)."""
    from transformers import AutoTokenizer

    from bimedix2.model.compose import save_tiny_vision_tower
    from bimedix2.model.tiny import save_tiny_causal_lm

    root = tmp_path_factory.mktemp("parts")
    llm = save_tiny_causal_lm(root / "llama")
    tokenizer = AutoTokenizer.from_pretrained(llm)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(llm)
    return llm, save_tiny_vision_tower(root / "clip")
