"""Our prompt ids equal the released BiMediX2 path's, token for token.

The released path, re-implemented here independently from its published code (read, not
imported): LLaVA++ `conv_llama3` (SeparatorStyle.MPT: system + sep, then role + message + sep per
turn, a bare role for the turn to generate) and LLaVA's `tokenizer_image_token` (split at
"<image>", tokenize every chunk with the tokenizer's own BOS, keep the first chunk's BOS once,
drop the others, one IMAGE_TOKEN_INDEX per image). Inference (`bimedix_inference.py`) and training
(`preprocess_llama3`) both go through it, so both start with two BOS tokens.

The tiny tokenizer adds `<|begin_of_text|>` itself, as Llama-3's does. Our prompts carry one
`<image>` id per image feature; runs of them are collapsed to the released single index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bimedix2.conversation import BIMEDIX2_LLAMA3
from bimedix2.engine import Engine
from bimedix2.types import GenParams, ImageRef, Message

RELEASED_SYSTEM = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nA chat between a curious user and an "
    "artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the "
    "user's questions."
)
ROLES = ("<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n")
SEP = "<|eot_id|>"
IMAGE_TOKEN_INDEX = -200


def released_prompt(turns: list[str | None]) -> str:
    """MPT-style `get_prompt` of conv_llama3; `None` as the last turn asks for a reply."""
    out = RELEASED_SYSTEM + SEP
    for i, text in enumerate(turns):
        role = ROLES[i % 2]
        out += role if text is None else role + text + SEP
    return out


def released_ids(prompt: str, tokenizer) -> list[int]:  # noqa: ANN001
    """`tokenizer_image_token` as LLaVA defines it."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    pieces: list[list[int]] = []  # insert_separator: chunk, [index] * (offset + 1), chunk, ...
    for i, chunk in enumerate(chunks):
        if i:
            pieces.append([IMAGE_TOKEN_INDEX] * (offset + 1))
        pieces.append(chunk)
    for piece in pieces:
        ids.extend(piece[offset:])
    return ids


def collapse_images(ids: list[int], image_token_id: int, per_image: int) -> list[int]:
    out: list[int] = []
    run = 0
    for token in ids:
        if token == image_token_id:
            run += 1
            if run == per_image:
                out.append(IMAGE_TOKEN_INDEX)
                run = 0
            continue
        assert run == 0, "an image's features were split"
        out.append(token)
    assert run == 0
    return out


def _images(n: int, png: Path) -> tuple[ImageRef, ...]:
    return tuple(ImageRef(png) for _ in range(n))


CASES = {
    # name: [(text, images in that user turn) or assistant text]
    "text-only-en": [("What are the symptoms of iron-deficiency anemia?", 0)],
    "text-only-ar": [("ما أعراض فقر الدم الناجم عن نقص الحديد؟", 0)],
    "one-image-en": [("What abnormality is seen in this chest X-ray?", 1)],
    "one-image-ar": [("ما هو التشخيص المحتمل لهذه الأشعة السينية للصدر؟", 1)],
    "two-images-en": [("Compare these two views.", 2)],
    "two-images-ar": [("قارن بين هاتين الصورتين.", 2)],
    "image-in-turn-3-en": [
        ("What is a pneumothorax?", 0),
        "Air in the pleural space.",
        ("Does this X-ray show one?", 1),
    ],
    "image-in-turn-3-ar": [
        ("ما هو الاسترواح الصدري؟", 0),
        "وجود هواء في الحيز الجنبي.",
        ("هل تظهر هذه الصورة استرواحا صدريا؟", 1),
    ],
}


def _conversation(case: list, png: Path) -> tuple[list[Message], list[str | None]]:
    messages, released = [], []
    for turn in case:
        if isinstance(turn, tuple):
            text, n = turn
            messages.append(Message("user", text, _images(n, png)))
            released.append("<image>\n" * n + text)
        else:
            messages.append(Message("assistant", turn))
            released.append(turn)
    return messages, released + [None]


@pytest.mark.parametrize("name", sorted(CASES))
def test_inference_prompt_ids_equal_the_released_path(name: str, tiny_llava, png_path: Path) -> None:  # noqa: ANN001
    assert tiny_llava.template == BIMEDIX2_LLAMA3
    messages, released_turns = _conversation(CASES[name], png_path)
    engine = Engine(tiny_llava)
    ours = engine.prepare([messages], GenParams()).inputs["input_ids"][0].tolist()
    ours = collapse_images(ours, tiny_llava.image_token_id, tiny_llava.tokens_per_image)
    expected = released_ids(released_prompt(released_turns), tiny_llava.tokenizer)
    assert ours == expected
    bos = tiny_llava.tokenizer.bos_token_id
    assert ours[:2] == [bos, bos] and ours[2] != bos


def test_language_steering_is_off_by_default(tiny_llava, png_path: Path) -> None:  # noqa: ANN001
    engine = Engine(tiny_llava)
    question = [Message("user", "ما هو التشخيص؟")]
    assert "أجب" not in engine.render(question)
    assert "أجب باللغة العربية الفصحى." in engine.render(question, GenParams(steer_language=True))


def _released_turns(raw: dict) -> list[str] | None:
    """LLaVA's preprocess_multimodal on one raw record: "<image>" moved to the front of its turn."""
    turns = []
    for i, sentence in enumerate(raw["conversations"]):
        if sentence["from"] != ("human", "gpt")[i % 2]:
            return None  # the released code has no system turns; such records are checked elsewhere
        value = sentence["value"]
        if value.count("<image>") > 1:
            return None  # released training keeps one <image> per turn (drops the rest); ours keeps each image
        if "<image>" in value:
            value = ("<image>\n" + value.replace("<image>", "").strip()).strip()
        turns.append(value)
    return turns


def test_training_samples_carry_the_released_prefix(tiny_llava) -> None:  # noqa: ANN001
    """Stage-2 encoding gives the ids `preprocess_llama3` gives for the same raw record (two BOS included)."""
    from bimedix2.train.encode import ConversationEncoder, EncoderSettings
    from bimedix2.train.records import read_records

    fixtures = Path(__file__).parents[1] / "train" / "fixtures" / "chat.jsonl"
    settings = EncoderSettings(
        BIMEDIX2_LLAMA3, tiny_llava.image_token_id, tiny_llava.tokens_per_image, 4096, "drop", False
    )
    encoder = ConversationEncoder(tiny_llava.tokenizer, settings)
    ours_by_id = {r.id: r for r in read_records([fixtures])}
    checked = 0
    for line in fixtures.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        turns = _released_turns(raw)
        if turns is None or raw["id"] not in ours_by_id:
            continue
        sample = encoder.encode_chat(ours_by_id[raw["id"]])
        ours = collapse_images(list(sample.input_ids), tiny_llava.image_token_id, tiny_llava.tokens_per_image)
        assert ours == released_ids(released_prompt(turns), tiny_llava.tokenizer), raw["id"]
        checked += 1
    assert checked >= 4
