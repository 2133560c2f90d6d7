"""Engine outputs pinned against plain transformers `generate`: every entry point gives the same replies.

The reference runs the model once to the token budget with the engine's decoding settings and
seed, then applies the documented stop rules: a row ends at its first stop token, or at the
first token whose decoded text contains a stop string (the text is cut there). Greedy and seeded
runs are prefix-stable, so cutting one long run gives what a stopping run gives.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig

from bimedix2.conversation import detect_language
from bimedix2.engine import Engine
from bimedix2.types import GenParams, ImageRef, Message, Reply

TOKENS = 16
GREEDY = GenParams(max_new_tokens=TOKENS, temperature=0)
SEEDED = (
    GenParams(max_new_tokens=TOKENS, temperature=1.0, seed=1),
    GenParams(max_new_tokens=TOKENS, temperature=0.7, top_p=0.9, seed=5),
)
QUESTIONS = ("What is anemia?", "ما هو فقر الدم؟", "Describe the findings")


def reference_ids(engine: Engine, conv: Sequence[Message], params: GenParams, top_k: int = 50) -> list[int]:
    """Generated token ids of plain `model.generate` with the engine's settings (no stop strings).

    top_k 50: what the released BiMediX2 code sampled with (its generate() call sets no top_k, so
    transformers' default applies); 0 turns top-k filtering off.
    """
    loaded = engine.loaded
    batch = engine.prepare([conv], params)
    tokenizer = loaded.tokenizer
    settings: dict[str, object] = dict(
        max_new_tokens=batch.max_new_tokens,
        do_sample=params.sampling,
        eos_token_id=engine.stop_token_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    if params.sampling:
        settings.update(temperature=params.temperature, top_p=params.top_p, top_k=top_k)
    if loaded.image_token_id is not None:
        settings["suppress_tokens"] = [loaded.image_token_id]
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        if params.seed is not None:
            torch.manual_seed(params.seed)
        out = loaded.model.generate(**batch.inputs, generation_config=GenerationConfig(**settings))
    return out[0, batch.inputs["input_ids"].shape[1] :].tolist()


def reference(engine: Engine, conv: Sequence[Message], params: GenParams) -> Reply:
    """The reply the engine must give, derived from `reference_ids` by the stop rules."""
    tokenizer = engine.loaded.tokenizer
    ids = reference_ids(engine, conv, params)
    prompt_tokens = engine.prepare([conv], params).prompt_tokens[0]

    def text_of(n: int) -> str:
        return tokenizer.decode(ids[:n], skip_special_tokens=True, clean_up_tokenization_spaces=False)

    cut_by_stop_string = False
    for n, token in enumerate(ids, start=1):
        if token in engine.stop_token_ids:
            text, finish = text_of(n - 1), "stop"
            break
        hits = [text_of(n).find(s) for s in params.stop if s in text_of(n)]
        if hits:
            text, finish, cut_by_stop_string = text_of(n)[: min(hits)], "stop", True
            break
    else:
        n, text, finish = len(ids), text_of(len(ids)), "length"
    if not cut_by_stop_string and text.endswith("\ufffd"):
        text = text[:-1]  # the engine never shows half a character at the end of a reply
    language = detect_language(text) if text.strip() else detect_language(conv[-1].content)
    return Reply(text, language, prompt_tokens, n, finish)  # type: ignore[arg-type]


def conversations(png: Path) -> list[list[Message]]:
    convs = [[Message("user", q)] for q in QUESTIONS]
    convs.append([Message("user", "What is seen?", (ImageRef(png),))])
    return convs


def with_stops(engine: Engine, conv: Sequence[Message]) -> list[GenParams]:
    """Stop strings cut from the greedy answer: inside one token, across tokens, Arabic, never matching.

    Slices holding U+FFFD (the random model's broken bytes) are skipped: no one stops on that.
    """
    text = reference(engine, conv, GREEDY).text
    arabic = next((text[i : i + 3] for i in range(len(text)) if "\u0600" <= text[i] <= "\u06ff"), "")
    stops = [(text[2:4],), (text[3:7], text[5:6]), (arabic,), ("\u0001never",)]
    return [
        GenParams(max_new_tokens=TOKENS, temperature=0, stop=s) for s in stops if all(s) and "\ufffd" not in "".join(s)
    ]


def stream_all(engine: Engine, conv: Sequence[Message], params: GenParams) -> tuple[str, Reply | None]:
    stream = engine.stream(conv, params)
    text = "".join(stream)
    return text, stream.reply


def test_generate_and_stream_match_plain_transformers(tiny_engine: Engine, png_path: Path) -> None:
    for conv in conversations(png_path):
        for params in (GREEDY, *SEEDED, GenParams(max_new_tokens=3, temperature=0), *with_stops(tiny_engine, conv)):
            expected = reference(tiny_engine, conv, params)
            assert tiny_engine.generate(conv, params) == expected, (conv[-1].content, params)
            assert stream_all(tiny_engine, conv, params) == (expected.text, expected)


def test_text_model_matches_plain_transformers(tiny_causal_lm_path: Path) -> None:
    from bimedix2.model.loader import load_model

    engine = Engine(load_model(str(tiny_causal_lm_path)))
    for question in QUESTIONS:
        conv = [Message("user", question)]
        for params in (GREEDY, SEEDED[0], *with_stops(engine, conv)):
            expected = reference(engine, conv, params)
            assert engine.generate(conv, params) == expected, (question, params)
            assert stream_all(engine, conv, params) == (expected.text, expected)


@pytest.mark.parametrize("params", [GREEDY, SEEDED[0]], ids=["greedy", "seeded"])
def test_generate_batch_rows_match_single_runs(tiny_engine: Engine, png_path: Path, params: GenParams) -> None:
    convs = conversations(png_path)
    replies = tiny_engine.generate_batch(convs, params)
    if params.seed is None:  # a seeded batch samples every row from one generator: rows differ from solo runs
        assert replies == [reference(tiny_engine, c, params) for c in convs]
    assert replies == tiny_engine.generate_batch(convs, params)


def test_stream_batch_rows_match_single_runs(tiny_engine: Engine, png_path: Path) -> None:
    convs = conversations(png_path)
    params = [GenParams(max_new_tokens=3, temperature=0), *with_stops(tiny_engine, convs[1])[:1], GREEDY, GREEDY]
    batch = tiny_engine.stream_batch([tiny_engine.prepare([c], p) for c, p in zip(convs, params, strict=True)], params)
    texts = [""] * len(convs)

    def read(i: int) -> None:
        texts[i] = "".join(batch.rows[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(convs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = [reference(tiny_engine, c, p) for c, p in zip(convs, params, strict=True)]
    assert [row.reply for row in batch.rows] == expected
    assert texts == [r.text for r in expected]


def test_sampling_uses_the_released_top_k(tiny_engine: Engine) -> None:
    """Seeded sampling equals transformers with top_k=50 (the released setting), not with top-k off."""
    conv = [Message("user", "Describe the MRI of the brain.")]
    params = GenParams(max_new_tokens=24, temperature=1.5, seed=3)
    released = reference_ids(tiny_engine, conv, params, top_k=50)
    unfiltered = reference_ids(tiny_engine, conv, params, top_k=0)
    assert released != unfiltered, "the seed must make top-k filtering visible"
    assert tiny_engine.generate(conv, params) == reference(tiny_engine, conv, params)
