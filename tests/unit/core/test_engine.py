"""Engine: image-token contract, greedy/sampling, seeds, stop handling, streaming, batching, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bimedix2.engine import Engine
from bimedix2.errors import (
    ContextTooLongError,
    ConversationError,
    ImageError,
    ImageTokenMismatchError,
    NoVisionError,
)
from bimedix2.model.loader import load_model
from bimedix2.model.tiny import build_tiny_llava
from bimedix2.types import GenParams, ImageRef, Message

GREEDY = GenParams(max_new_tokens=12, temperature=0)


def ask(text: str, *images: Path) -> list[Message]:
    return [Message("user", text, tuple(ImageRef(p) for p in images))]


def test_image_token_contract_holds(tiny_engine: Engine, png_path: Path) -> None:
    batch = tiny_engine.prepare([ask("What is this?", png_path, png_path)], GREEDY)
    ids = batch.inputs["input_ids"][0]
    assert int((ids == tiny_engine.loaded.image_token_id).sum()) == 2 * tiny_engine.loaded.tokens_per_image
    features = tiny_engine.loaded.model.get_image_features(pixel_values=batch.inputs["pixel_values"])
    features = features.pooler_output if hasattr(features, "pooler_output") else features
    total = (
        sum(f.shape[0] for f in features)
        if isinstance(features, (list, tuple))
        else features.shape[0] * features.shape[1]
    )
    assert total == 2 * tiny_engine.loaded.tokens_per_image


def test_clip_336_gives_576_tokens_per_image(tmp_path: Path) -> None:
    model, processor = build_tiny_llava(image_size=336, hidden=16)
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.tokens_per_image == 576
    image = tmp_path / "wide.png"
    Image.new("RGB", (500, 200), (200, 10, 10)).save(image)
    batch = Engine(loaded).prepare([ask("Describe", image)], GREEDY)
    assert tuple(batch.inputs["pixel_values"].shape) == (1, 3, 336, 336)
    assert int((batch.inputs["input_ids"] == loaded.image_token_id).sum()) == 576


def test_image_token_mismatch_names_the_sample(tiny_llava_path: Path, png_path: Path) -> None:
    loaded = load_model(str(tiny_llava_path))
    engine = Engine(loaded)
    # Simulate a processor that miscounts (the CLIP off-by-one pitfall): the contract must catch it.
    loaded.processor.num_additional_image_tokens = 0
    with pytest.raises(ImageTokenMismatchError, match=r"sample case-7: 15 image tokens .*\(expected 16\)"):
        engine.prepare([ask("What is this?", png_path)], GREEDY, sample_ids=["case-7"])


def test_greedy_is_deterministic_and_streaming_matches(tiny_engine: Engine, png_path: Path) -> None:
    for conv in (ask("What abnormality is seen?", png_path), ask("ما هو التشخيص؟", png_path), ask("Hello")):
        reply = tiny_engine.generate(conv, GREEDY)
        assert reply == tiny_engine.generate(conv, GREEDY)
        stream = tiny_engine.stream(conv, GREEDY)
        pieces = list(stream)
        assert "".join(pieces) == reply.text
        assert stream.reply == reply
        assert reply.completion_tokens <= 12 and reply.prompt_tokens > 0


def test_streaming_matches_with_stop_strings(tiny_engine: Engine) -> None:
    conv = ask("Describe the findings")
    full = tiny_engine.generate(conv, GREEDY).text
    assert len(full) > 4
    stop = full[2:4]
    params = GenParams(max_new_tokens=12, temperature=0, stop=(stop,))
    reply = tiny_engine.generate(conv, params)
    assert reply.text == full[: full.find(stop)] and reply.finish_reason == "stop"
    assert "".join(tiny_engine.stream(conv, params)) == reply.text


def test_seeded_sampling_is_reproducible(tiny_engine: Engine) -> None:
    conv = ask("What is anemia?")
    params = GenParams(max_new_tokens=16, temperature=1.0, seed=123)
    first = tiny_engine.generate(conv, params).text
    assert tiny_engine.generate(conv, params).text == first
    others = {tiny_engine.generate(conv, GenParams(max_new_tokens=16, temperature=1.0, seed=s)).text for s in range(4)}
    assert len(others | {first}) > 1  # sampling really samples


def test_length_finish_reason(tiny_engine: Engine) -> None:
    reply = tiny_engine.generate(ask("Hello"), GenParams(max_new_tokens=3, temperature=0))
    assert reply.completion_tokens <= 3
    if reply.completion_tokens == 3:
        assert reply.finish_reason == "length"


def test_batch_equals_individual_generation(tiny_engine: Engine, png_path: Path) -> None:
    conversations = [
        ask("What abnormality is seen in this chest X-ray?", png_path),
        ask("ما هو فقر الدم؟"),
        [Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Compare", (ImageRef(png_path),) * 2)],
    ]
    batch = tiny_engine.generate_batch(conversations, GREEDY)
    single = [tiny_engine.generate(c, GREEDY) for c in conversations]
    assert [r.text for r in batch] == [r.text for r in single]
    assert [r.prompt_tokens for r in batch] == [r.prompt_tokens for r in single]


def test_reply_language_follows_question(tiny_engine: Engine) -> None:
    batch = tiny_engine.prepare([ask("ما هو فقر الدم؟"), ask("What is anemia?")], GREEDY)
    assert batch.languages == ("ar", "en")


def test_context_overflow_is_a_clear_error(tiny_llava) -> None:  # noqa: ANN001
    engine = Engine(tiny_llava, max_context=64)
    with pytest.raises(ContextTooLongError, match=r"sample #0: the prompt is \d+ tokens; the model's context is 64"):
        engine.generate(ask("word " * 100), GREEDY)


def test_max_new_tokens_is_clipped_to_the_context(tiny_llava) -> None:  # noqa: ANN001
    engine = Engine(tiny_llava, max_context=200)
    batch = engine.prepare([ask("Hello")], GenParams(max_new_tokens=1024))
    assert batch.max_new_tokens == 200 - batch.prompt_tokens[0]


def test_text_model_rejects_images_with_guidance(tiny_causal_lm_path: Path, png_path: Path) -> None:
    engine = Engine(load_model(str(tiny_causal_lm_path)))
    with pytest.raises(NoVisionError, match="no vision encoder.*--model MBZUAI/BiMediX2-8B-hf"):
        engine.generate(ask("What is this?", png_path), GREEDY)
    assert engine.generate(ask("What is anemia?"), GREEDY).prompt_tokens > 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "missing.png", "image file not found"),
        (lambda d: _write(d / "empty.png", b""), r"image is empty \(0 bytes\)"),
        (lambda d: _write(d / "notes.png", b"these are not image bytes" * 10), "not a recognised image file"),
        (lambda d: _write(d / "cut.png", _png_bytes()[:200]), "truncated or corrupt"),
    ],
)
def test_bad_images_give_clear_errors(tiny_engine: Engine, tmp_path: Path, make, match: str) -> None:  # noqa: ANN001
    path = make(tmp_path)
    with pytest.raises(ImageError, match=match) as info:
        tiny_engine.generate(ask("What is this?", path), GREEDY)
    assert path.name in str(info.value)


def test_more_images_than_allowed_and_empty_message(tiny_engine: Engine, png_path: Path) -> None:
    with pytest.raises(ConversationError, match="more than the limit of 8"):
        tiny_engine.generate(ask("Compare", *([png_path] * 9)), GREEDY)
    with pytest.raises(ConversationError, match="empty"):
        tiny_engine.generate(ask("  "), GREEDY)


def test_literal_placeholder_cannot_smuggle_extra_images(tiny_engine: Engine, png_path: Path) -> None:
    # literal <image> in the text is text (issue 15 defect 7): one attached image, one image's tokens
    batch = tiny_engine.prepare([ask("<image>\n<image>\nCompare", png_path)], GREEDY)
    found = int((batch.inputs["input_ids"] == tiny_engine.loaded.image_token_id).sum())
    assert found == tiny_engine.loaded.tokens_per_image


def test_cancel_stops_a_stream(tiny_engine: Engine) -> None:
    stream = tiny_engine.stream(ask("Tell me everything"), GenParams(max_new_tokens=200, temperature=0))
    stream.cancel()
    text = "".join(stream)
    assert stream.reply is not None and stream.reply.completion_tokens < 200 and text == stream.reply.text


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()
