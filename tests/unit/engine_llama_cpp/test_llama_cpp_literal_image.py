"""Issue 15 defect 7 on `--engine llama-cpp`: a literal `<image>` in message text is text.

Its ids are llama.cpp's tokenization of "<image>" with special-token parsing off, only attached
images go through libmtmd, and the prompt ids equal the transformers engine's on the same GGUF export.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bimedix2.conversation import IMAGE_PLACEHOLDER
from bimedix2.engine import Engine
from bimedix2.types import GenParams, ImageRef, Message

from .helpers import prompt_ids

SHORT = GenParams(max_new_tokens=6, temperature=0.0)
SYSTEM = "Translate to Arabic. Keep every <image> token exactly where it is."


def _count(ids: Sequence[int], part: Sequence[int]) -> int:
    return sum(1 for i in range(len(ids) - len(part) + 1) if list(ids[i : i + len(part)]) == list(part))


def _plain(engine: Engine) -> list[int]:
    return engine.loaded.tokenizer.encode(IMAGE_PLACEHOLDER, split_special_tokens=True)


@pytest.mark.parametrize(
    "question", ["What is seen? Keep <image> as written.", "ما الذي يظهر؟ أبقِ <image> كما هو."], ids=["en", "ar"]
)
def test_literal_plus_real_image_matches_transformers(
    lc_engine: Engine, tiny_engine: Engine, image_files: list[Path], question: str
) -> None:
    conv = [Message("system", SYSTEM), Message("user", question, (ImageRef(image_files[0]),))]
    image_id = lc_engine.loaded.image_token_id
    ours = prompt_ids(lc_engine, conv)
    assert ours.count(image_id) == lc_engine.loaded.tokens_per_image  # one image through libmtmd
    plain = _plain(lc_engine)
    assert image_id not in plain and len(plain) > 1
    assert plain == tiny_engine.loaded.tokenizer.encode(
        IMAGE_PLACEHOLDER, add_special_tokens=False, split_special_tokens=True
    )
    assert _count(ours, plain) == 2
    assert prompt_ids(lc_engine, conv, image_token_id=tiny_engine.loaded.image_token_id) == prompt_ids(
        tiny_engine, conv
    )
    assert lc_engine.generate(conv, SHORT).completion_tokens == 6


def test_text_only_literal_generates(lc_engine: Engine) -> None:
    conv = [Message("system", SYSTEM), Message("user", "<image>\nIs the lesion malignant?")]
    ids = prompt_ids(lc_engine, conv)
    assert lc_engine.loaded.image_token_id not in ids and _count(ids, _plain(lc_engine)) == 2
    assert lc_engine.generate(conv, SHORT).completion_tokens == 6


def test_smollm2_gguf_takes_literal_placeholder(smol_lc_engine: Engine) -> None:
    """The real SmolLM2 (no image token, no vision) answers a prompt whose text holds `<image>`."""
    conv = [Message("system", SYSTEM), Message("user", "Translate: <image>\nWhat is the diagnosis?")]
    ids = prompt_ids(smol_lc_engine, conv)
    assert _count(ids, _plain(smol_lc_engine)) == 2
    reply = smol_lc_engine.generate(conv, SHORT)
    assert reply.completion_tokens >= 1 and reply.prompt_tokens == len(ids)
