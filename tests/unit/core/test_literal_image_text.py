"""Issue 15 defect 7: a literal `<image>` in message text is text for the transformers engine.

The model sees the ids the tokenizer gives the text "<image>" with special tokens not parsed, and
only attached images become image tokens (the Llava processor expands the template's `<image>` only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bimedix2.conversation import IMAGE_PLACEHOLDER
from bimedix2.engine import Engine
from bimedix2.types import GenParams, ImageRef, Message

GREEDY = GenParams(max_new_tokens=6, temperature=0.0)
TRANSLATE_SYSTEM = "Translate to Arabic. Keep every <image> token exactly where it is."


def _contains(ids: Sequence[int], part: Sequence[int]) -> int:
    """How many times `part` occurs in `ids` as a contiguous run."""
    return sum(1 for i in range(len(ids) - len(part) + 1) if list(ids[i : i + len(part)]) == list(part))


def _plain(engine: Engine) -> list[int]:
    return engine.loaded.tokenizer.encode(IMAGE_PLACEHOLDER, add_special_tokens=False, split_special_tokens=True)


def _ids(engine: Engine, conv: Sequence[Message]) -> list[int]:
    return engine.prepare([conv], GREEDY).inputs["input_ids"][0].tolist()


@pytest.fixture(scope="module")
def causal_engine(tiny_causal_lm_path: Path) -> Engine:
    from bimedix2.model.loader import load_model

    return Engine(load_model(str(tiny_causal_lm_path)))


@pytest.mark.parametrize(
    "question",
    ["<image>\nWhat is seen? Keep <image> as written.", "ما الذي يظهر؟ أبقِ <image> كما هو."],
    ids=["en", "ar"],
)
def test_llava_literal_placeholder_plus_a_real_image(tiny_engine: Engine, png_path: Path, question: str) -> None:
    loaded = tiny_engine.loaded
    conv = [Message("system", TRANSLATE_SYSTEM), Message("user", question, (ImageRef(png_path),))]
    ids = _ids(tiny_engine, conv)
    assert ids.count(loaded.image_token_id) == loaded.tokens_per_image  # the one attached image, nothing more
    plain = _plain(tiny_engine)
    assert loaded.image_token_id not in plain and len(plain) > 1
    assert _contains(ids, plain) == 1 + question.count(IMAGE_PLACEHOLDER)
    reply = tiny_engine.generate(conv, GREEDY)
    assert reply.completion_tokens == 6 and reply.prompt_tokens == len(ids)


def test_llava_text_only_with_literal_placeholder(tiny_engine: Engine) -> None:
    conv = [Message("system", TRANSLATE_SYSTEM), Message("user", "<image>\nIs the lesion malignant?")]
    ids = _ids(tiny_engine, conv)
    assert tiny_engine.loaded.image_token_id not in ids
    assert _contains(ids, _plain(tiny_engine)) == 2
    assert tiny_engine.generate(conv, GREEDY).completion_tokens == 6


def test_prompts_without_literals_keep_their_ids(tiny_engine: Engine, png_path: Path) -> None:
    """Marking changes nothing for ordinary text: the ids are the tokenizer's own on the plain prompt."""
    conv = [Message("user", "Describe the X-ray.", (ImageRef(png_path),))]
    prompt = tiny_engine.render(conv)
    expected = tiny_engine.loaded.processor(
        text=[prompt], images=[tiny_engine._load(ImageRef(png_path))], add_special_tokens=False
    )["input_ids"][0]
    assert _ids(tiny_engine, conv) == list(expected)


def test_batch_mixing_literal_and_image_rows(tiny_engine: Engine, png_path: Path) -> None:
    loaded = tiny_engine.loaded
    rows = [
        [Message("user", "Compare <image> with the scan.", (ImageRef(png_path),))],
        [Message("user", "Only text, with <image> in it.")],
    ]
    batch = tiny_engine.prepare(rows, GREEDY)
    found = (batch.inputs["input_ids"] == loaded.image_token_id).sum(1).tolist()
    assert found == [loaded.tokens_per_image, 0]
    assert [r.completion_tokens for r in tiny_engine.generate_batch(rows, GREEDY)] == [6, 6]


@pytest.mark.parametrize("text", ["Keep <image> here.", "أبقِ <image> هنا."], ids=["en", "ar"])
def test_plain_causal_lm_accepts_literal_placeholder(causal_engine: Engine, text: str) -> None:
    conv = [Message("system", TRANSLATE_SYSTEM), Message("user", text)]
    ids = _ids(causal_engine, conv)
    assert _contains(ids, _plain(causal_engine)) == 2
    assert causal_engine.generate(conv, GREEDY).completion_tokens == 6
