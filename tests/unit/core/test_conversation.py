"""Chat template golden tests (English and Arabic), language detection and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bimedix2.conversation import (
    BIMEDIX2_LLAMA3,
    BIMEDIX2_SYSTEM_PROMPT,
    IMAGE_PLACEHOLDER,
    LITERAL_END,
    LITERAL_START,
    ChatTemplate,
    count_image_slots,
    detect_language,
    render_prompt,
    split_literals,
    validate_conversation,
)
from bimedix2.errors import ConversationError
from bimedix2.images import ImageLimits
from bimedix2.model.tiny import build_tiny_tokenizer
from bimedix2.types import ImageRef, Message

SYS = (  # two BOS, as the released conv_llama3 system string + the tokenizer's own BOS
    "<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.<|eot_id|>"
)
USER = "<|start_header_id|>user<|end_header_id|>\n\n"
ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
EOT = "<|eot_id|>"
IMG = ImageRef(Path("scan.png"))


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return build_tiny_tokenizer()


def render(tokenizer, messages, **kw) -> str:  # noqa: ANN001
    return render_prompt(messages, BIMEDIX2_LLAMA3, tokenizer, **kw)


def steered(tokenizer, messages) -> str:  # noqa: ANN001
    return render(tokenizer, messages, steer_language=True)


def test_system_prompt_is_the_released_one() -> None:
    assert BIMEDIX2_SYSTEM_PROMPT.startswith("A chat between a curious user and an artificial intelligence")
    assert BIMEDIX2_LLAMA3.stop_tokens == ("<|eot_id|>",)


def test_english_single_turn_with_image(tokenizer) -> None:  # noqa: ANN001
    text = steered(tokenizer, [Message("user", "What abnormality is seen?", (IMG,))])
    assert text == SYS + USER + "<image>\nWhat abnormality is seen?\n\nAnswer in English." + EOT + ASSISTANT


def test_arabic_single_turn_with_image(tokenizer) -> None:  # noqa: ANN001
    question = "ما هو التشخيص المحتمل في هذه الصورة؟"
    text = steered(tokenizer, [Message("user", question, (IMG,))])
    assert text == SYS + USER + "<image>\n" + question + "\n\nأجب باللغة العربية الفصحى." + EOT + ASSISTANT


def test_image_introduced_in_turn_two(tokenizer) -> None:  # noqa: ANN001
    messages = [
        Message("user", "What is a pneumothorax?"),
        Message("assistant", "Air in the pleural space."),
        Message("user", "Does this X-ray show one?", (IMG,)),
    ]
    text = steered(tokenizer, messages)
    assert text == (
        SYS
        + USER
        + "What is a pneumothorax?"
        + EOT
        + ASSISTANT
        + "Air in the pleural space."
        + EOT
        + USER
        + "<image>\nDoes this X-ray show one?\n\nAnswer in English."
        + EOT
        + ASSISTANT
    )


def test_arabic_multi_turn_image_in_turn_two_two_images(tokenizer) -> None:  # noqa: ANN001
    messages = [
        Message("user", "ما هو الاسترواح الصدري؟"),
        Message("assistant", "وجود هواء في الحيز الجنبي."),
        Message("user", "قارن بين هاتين الصورتين.", (IMG, IMG)),
    ]
    text = steered(tokenizer, messages)
    assert text == (
        SYS
        + USER
        + "ما هو الاسترواح الصدري؟"
        + EOT
        + ASSISTANT
        + "وجود هواء في الحيز الجنبي."
        + EOT
        + USER
        + "<image>\n<image>\nقارن بين هاتين الصورتين.\n\nأجب باللغة العربية الفصحى."
        + EOT
        + ASSISTANT
    )


def test_language_hint_is_opt_in_and_follows_the_latest_turn(tokenizer) -> None:  # noqa: ANN001
    messages = [Message("user", "Hello"), Message("assistant", "Hi"), Message("user", "ما أعراض فقر الدم؟")]
    hinted = steered(tokenizer, messages)
    assert hinted.count("أجب باللغة العربية الفصحى.") == 1 and "Answer in English." not in hinted
    plain = render(tokenizer, messages)
    assert "أجب" not in plain and plain.endswith(USER + "ما أعراض فقر الدم؟" + EOT + ASSISTANT)


def test_explicit_system_message_replaces_default(tokenizer) -> None:  # noqa: ANN001
    text = render(tokenizer, [Message("system", "You are a radiologist."), Message("user", "Hi")], steer_language=False)
    assert text.startswith(
        "<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are a radiologist.<|eot_id|>"
    )
    assert BIMEDIX2_SYSTEM_PROMPT not in text


def test_rendered_prompt_tokenizes_special_tokens_atomically(tokenizer) -> None:  # noqa: ANN001
    text = render(tokenizer, [Message("user", "Hi", (IMG,))])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    assert ids[:2] == [bos, bos] and ids[2] != bos
    assert ids.count(tokenizer.convert_tokens_to_ids("<image>")) == 1
    assert ids.count(tokenizer.convert_tokens_to_ids("<|eot_id|>")) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is the diagnosis?", "en"),
        ("ما هو التشخيص؟", "ar"),
        ("ما هي الجرعة المناسبة من metformin لمريض السكري؟", "ar"),  # Arabic with a Latin drug name
        ("Is ١٢ mg of الباراسيتامول too much for a child weighing 10 kg?", "en"),  # English with an Arabic word
        ("12 mg/dL", "en"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "no messages"),
        ([Message("user", "   ")], "message 0: the user message is empty"),
        ([Message("assistant", "Hi")], "expected a user message"),
        ([Message("user", "a"), Message("user", "b")], "expected a assistant message"),
        ([Message("user", "a"), Message("assistant", "b")], "last message must be from the user"),
        ([Message("user", "a"), Message("assistant", "b", (IMG,)), Message("user", "c")], "only user messages"),
        ([Message("user", "a", (IMG,) * 3)], "3 images, more than the limit of 2"),
    ],
)
def test_validation_errors_name_the_problem(messages, match: str) -> None:  # noqa: ANN001
    with pytest.raises(ConversationError, match=match):
        validate_conversation(messages, ImageLimits(max_images_per_message=2, max_images_per_conversation=4))


def test_conversation_image_limit() -> None:
    messages = [Message("user", "a", (IMG, IMG)), Message("assistant", "b"), Message("user", "c", (IMG, IMG))]
    with pytest.raises(ConversationError, match="4 images, more than the limit of 3"):
        validate_conversation(messages, ImageLimits(max_images_per_message=2, max_images_per_conversation=3))


def test_image_only_message_is_allowed(tokenizer) -> None:  # noqa: ANN001
    text = steered(tokenizer, [Message("user", "", (IMG,))])
    assert USER + "<image>\nAnswer in English." + EOT in text


# ------------------------------------------------------------------ literal `<image>` in text is text
LIT = LITERAL_START + IMAGE_PLACEHOLDER + LITERAL_END


def test_literal_marks_are_the_ones_transformers_sanitizes() -> None:
    from transformers.utils import chat_template_utils

    assert (LITERAL_START, LITERAL_END) == (
        chat_template_utils._CONTROL_TOKEN_START,
        chat_template_utils._CONTROL_TOKEN_END,
    )


def test_literal_placeholder_in_text_is_marked_not_an_image_slot(tokenizer) -> None:  # noqa: ANN001
    messages = [
        Message("system", "Keep every <image> token exactly where it is."),
        Message("user", "<image>\nWhat is seen? Also: <image>", (IMG,)),
    ]
    text = render(tokenizer, messages)
    assert text == (
        SYS.replace(BIMEDIX2_SYSTEM_PROMPT, f"Keep every {LIT} token exactly where it is.")
        + USER
        + f"<image>\n{LIT}\nWhat is seen? Also: {LIT}"
        + EOT
        + ASSISTANT
    )
    assert count_image_slots(text) == 1 and text.count(IMAGE_PLACEHOLDER) == 4
    literals = [piece for piece, literal in split_literals(text) if literal]
    assert literals == [IMAGE_PLACEHOLDER] * 3
    assert "".join(piece for piece, _ in split_literals(text)) == text.replace(LITERAL_START, "").replace(
        LITERAL_END, ""
    )


def test_arabic_text_with_literal_placeholder_and_no_image(tokenizer) -> None:  # noqa: ANN001
    question = "ترجم النص مع الإبقاء على <image> كما هو."
    text = steered(tokenizer, [Message("user", question)])
    assert (
        text
        == SYS + USER + question.replace(IMAGE_PLACEHOLDER, LIT) + "\n\nأجب باللغة العربية الفصحى." + EOT + ASSISTANT
    )
    assert count_image_slots(text) == 0


def test_marks_written_in_text_cannot_forge_or_hide_a_slot(tokenizer) -> None:  # noqa: ANN001
    forged = f"{LITERAL_END}<image>{LITERAL_START} and {LIT}"  # marks a client typed are dropped, then re-marked
    text = render(tokenizer, [Message("user", forged)])
    assert USER + f"{LIT} and {LIT}" + EOT in text and count_image_slots(text) == 0


def test_literal_placeholder_tokenizes_as_plain_text(tokenizer) -> None:  # noqa: ANN001
    text = render(tokenizer, [Message("user", "see <image> here", (IMG,))])
    ids = tokenizer(text, add_special_tokens=False, sanitize_control_tokens=True)["input_ids"]
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    plain = tokenizer.encode(IMAGE_PLACEHOLDER, add_special_tokens=False, split_special_tokens=True)
    assert ids.count(image_id) == 1 and len(plain) > 1
    assert any(ids[i : i + len(plain)] == plain for i in range(len(ids)))


def test_a_template_that_drops_images_is_refused_in_user_terms(tokenizer) -> None:  # noqa: ANN001
    text_only = ChatTemplate(
        "text-only",
        "{% for m in messages %}{{ m['content'] if m['content'] is string else m['content'][-1]['text'] }}{% endfor %}",
        ("<|eot_id|>",),
    )
    with pytest.raises(ConversationError) as error:
        render_prompt([Message("user", "<image> what is this?", (IMG,))], text_only, tokenizer)
    message = str(error.value)
    assert "'text-only' shows the model 0 image(s), but the conversation attaches 1" in message, message
    assert "placeholders" not in message
