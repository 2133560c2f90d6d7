"""Chat templates, `<image>` placement, language detection and conversation validation.

Templates are Jinja strings in the Hugging Face chat-template dialect, so the same text is
rendered here, saved into converted checkpoints and handed to vLLM. A user message that
carries images is passed to the template as content parts (`{"type": "image"}` first, then
the text); a text-only message as a plain string, which every model's own template accepts.

Text is text: a literal `<image>` (or the model's own image token) written in a message is marked
before the template runs, so it never becomes an image slot; encoders tokenize marked spans with
special-token parsing off (`split_literals`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConversationError
from .images import DEFAULT_LIMITS, ImageLimits
from .types import Language, Message

IMAGE_PLACEHOLDER = "<image>"

# Private-use marks around an image marker written in message text: the marks of transformers' own
# input sanitization (`transformers.utils.chat_template_utils.mark_control_tokens`), so a transformers
# tokenizer or processor called with `sanitize_control_tokens=True` encodes a marked span as plain text
# and never expands it as an image. Message text cannot carry them: marking drops any it already holds.
LITERAL_START = "\U000f0000"
LITERAL_END = "\U000f0001"
_MARKED = re.compile(f"{LITERAL_START}(.*?){LITERAL_END}|[{LITERAL_START}{LITERAL_END}]", re.DOTALL)

BIMEDIX2_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# LLaVA++ `conv_llama3` (SeparatorStyle.MPT, sep "<|eot_id|>") as BiMediX2 was trained and released:
# system header + prompt, then "<header>role<end_header>\n\n" + message + "<|eot_id|>" per turn;
# images as "<image>\n" at the start of the turn that carries them.
# Two BOS tokens: the released system string itself starts with "<|begin_of_text|>" and the released
# path (`tokenizer_image_token`, and `tokenizer(...)` for text-only training samples) lets the Llama-3
# tokenizer add its own BOS in front of it. Both are rendered here, so tokenizing the prompt with
# add_special_tokens=False (as the engine, training and vLLM do) gives the released ids exactly.
BIMEDIX2_LLAMA3_TEMPLATE = (
    "{{ bos_token }}<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] }}{% set turns = messages[1:] %}"
    "{% else %}" + BIMEDIX2_SYSTEM_PROMPT + "{% set turns = messages %}{% endif %}"
    "<|eot_id|>"
    "{% for message in turns %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A named Jinja chat template and the tokens that end an assistant turn."""

    name: str
    jinja: str
    stop_tokens: tuple[str, ...]


BIMEDIX2_LLAMA3 = ChatTemplate("bimedix2-llama3", BIMEDIX2_LLAMA3_TEMPLATE, ("<|eot_id|>",))
BUILTIN_TEMPLATES: dict[str, ChatTemplate] = {BIMEDIX2_LLAMA3.name: BIMEDIX2_LLAMA3}

LANGUAGE_HINTS: dict[Language, str] = {
    "en": "Answer in English.",
    "ar": "أجب باللغة العربية الفصحى.",
}

_ARABIC_LETTER = re.compile(
    r"[\u0620-\u064A\u066E-\u06D3\u06FA-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFC]"
)
_LATIN_LETTER = re.compile(r"[A-Za-z\u00C0-\u024F]")
# Share of letters that must be Arabic for a text to count as Arabic: Arabic medical text often
# carries Latin drug names and abbreviations, so a plain majority is too strict.
_ARABIC_SHARE = 0.3


def detect_language(text: str) -> Language:
    """'ar' when at least 30% of the letters are Arabic script, else 'en'."""
    arabic = len(_ARABIC_LETTER.findall(text))
    latin = len(_LATIN_LETTER.findall(text))
    if arabic == 0:
        return "en"
    return "ar" if arabic >= _ARABIC_SHARE * (arabic + latin) else "en"


def validate_conversation(
    messages: Sequence[Message], limits: ImageLimits = DEFAULT_LIMITS, *, for_generation: bool = True
) -> None:
    """Check roles, emptiness, reserved placeholders and image counts; raise `ConversationError`."""
    if not messages:
        raise ConversationError("the conversation has no messages")
    turns = list(messages)
    if turns[0].role == "system":
        if turns[0].images:
            raise ConversationError("message 0: a system message cannot carry images")
        turns = turns[1:]
    offset = len(messages) - len(turns)
    total_images = 0
    for i, msg in enumerate(turns):
        index = i + offset
        expected = "user" if i % 2 == 0 else "assistant"
        if msg.role != expected:
            raise ConversationError(
                f"message {index}: expected a {expected} message, got {msg.role!r} "
                "(turns must alternate user/assistant)"
            )
        if msg.images and msg.role != "user":
            raise ConversationError(f"message {index}: only user messages can carry images")
        if not msg.content.strip() and not msg.images:
            raise ConversationError(f"message {index}: the {msg.role} message is empty")
        if len(msg.images) > limits.max_images_per_message:
            raise ConversationError(
                f"message {index}: {len(msg.images)} images, more than the limit of {limits.max_images_per_message}"
            )
        total_images += len(msg.images)
    if total_images > limits.max_images_per_conversation:
        raise ConversationError(
            f"the conversation has {total_images} images, more than the limit of {limits.max_images_per_conversation}"
        )
    if for_generation and turns and turns[-1].role != "user":
        raise ConversationError("the last message must be from the user to generate a reply")
    if for_generation and not turns:
        raise ConversationError("the conversation has no user message")


def last_user_language(messages: Sequence[Message]) -> Language:
    """Language of the most recent user message (the one the reply should match)."""
    for msg in reversed(messages):
        if msg.role == "user" and msg.content.strip():
            return detect_language(msg.content)
    return "en"


def to_template_messages(messages: Sequence[Message], *, steer_language: bool) -> list[dict[str, Any]]:
    """Messages in the chat-template input format; adds the reply-language hint to the last user turn."""
    out: list[dict[str, Any]] = []
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    for i, msg in enumerate(messages):
        text = msg.content
        if steer_language and i == last_user:
            hint = LANGUAGE_HINTS[detect_language(text)] if text.strip() else LANGUAGE_HINTS["en"]
            text = f"{text}\n\n{hint}" if text.strip() else hint
        if msg.images:
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in msg.images]
            parts.append({"type": "text", "text": text})
            out.append({"role": msg.role, "content": parts})
        else:
            out.append({"role": msg.role, "content": text})
    return out


def image_markers(tokenizer: Any) -> tuple[str, ...]:
    """Texts that would become an image slot: `<image>`, and the tokenizer's own image token if it names another."""
    own = getattr(tokenizer, "image_token", None)
    return (
        (IMAGE_PLACEHOLDER,) if not isinstance(own, str) or own in ("", IMAGE_PLACEHOLDER) else (IMAGE_PLACEHOLDER, own)
    )


def mark_literals(payload: list[dict[str, Any]], markers: Sequence[str]) -> list[dict[str, Any]]:
    """Template input with every image marker written in its strings wrapped in `LITERAL_START`/`LITERAL_END`."""
    from transformers.utils.chat_template_utils import mark_control_tokens

    pattern = re.compile("|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)))
    return mark_control_tokens(payload, pattern)


def split_literals(prompt: str) -> list[tuple[str, bool]]:
    """A rendered prompt as (text, literal) pieces in order; literal pieces must be tokenized as plain text.

    Marks are dropped; a lone mark (a template that split a marked span) still breaks the text there,
    as transformers does, so the text on either side cannot join into an image marker.
    """
    pieces: list[tuple[str, bool]] = []
    last = 0
    for match in _MARKED.finditer(prompt):
        if match.start() > last:
            pieces.append((prompt[last : match.start()], False))
        if match.group(1):
            pieces.append((match.group(1), True))
        last = match.end()
    if last < len(prompt):
        pieces.append((prompt[last:], False))
    return pieces


def count_image_slots(prompt: str) -> int:
    """Image slots in a rendered prompt: `<image>` outside the marked literal spans."""
    return sum(text.count(IMAGE_PLACEHOLDER) for text, literal in split_literals(prompt) if not literal)


def render_prompt(
    messages: Sequence[Message],
    template: ChatTemplate,
    tokenizer: Any,
    *,
    steer_language: bool = False,
    add_generation_prompt: bool = True,
) -> str:
    """Render a conversation to the exact prompt string the model sees.

    Image markers written in message text come out marked as literals (see `split_literals`), so only
    the template's own `<image>`, one per attached image, are image slots. Raises `ConversationError`
    if the template did not place one slot per attached image (a model's own template that ignores
    images would otherwise drop them silently).
    """
    payload = mark_literals(to_template_messages(messages, steer_language=steer_language), image_markers(tokenizer))
    text = tokenizer.apply_chat_template(
        payload, chat_template=template.jinja, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    n_images = sum(len(m.images) for m in messages)
    placed = count_image_slots(text)
    if placed != n_images:
        raise ConversationError(
            f"the chat template {template.name!r} shows the model {placed} image(s), but the conversation "
            f"attaches {n_images}; use a template that places {IMAGE_PLACEHOLDER} once for each attached image"
        )
    return text
