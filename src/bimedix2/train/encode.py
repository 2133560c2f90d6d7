"""Records to token ids and labels, with the loss mask computed from token spans.

Stage 2 (chat): the conversation is rendered with the model's chat template once per turn
prefix and tokenized; each prefix's tokens must be a prefix of the next one's (otherwise the
template or tokenizer rewrites earlier turns and no consistent mask exists: `RecordError`
with the record id). An assistant turn's label span is the tokens between "prefix + assistant
header" and "prefix + assistant turn", so it includes the reply and its end-of-turn token and
nothing else. Nothing is located by splitting rendered strings.

Stage 1 (plain, as LLaVA's `plain` conversation): BOS, the image tokens, the caption, "\\n";
loss on the caption and the newline.

Images: the template emits one `<image>` token per image; it is expanded here to the
model's `tokens_per_image` copies (labels -100), which is exactly what `LlavaProcessor` does
by string replacement -- done at token level so the per-turn spans survive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..conversation import LANGUAGE_HINTS, ChatTemplate, detect_language, render_prompt, validate_conversation
from ..errors import ConversationError, ImageTokenMismatchError, RecordError
from ..types import ImageRef, Message
from .records import TrainRecord

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedSample:
    """Token ids and labels of one record, with the images its image tokens stand for."""

    id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    images: tuple[ImageRef, ...]
    truncated: bool = False  # cut at a turn boundary (or a caption's tail) to fit max_length

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


@dataclass(frozen=True)
class EncoderSettings:
    """What the encoder needs to know about the model and the run."""

    template: ChatTemplate
    image_token_id: int | None  # None: a text-only model
    tokens_per_image: int | None
    max_length: int
    overlong: str = "drop"  # "drop" or "truncate" (at turn boundaries)
    steer_language: bool = False


class TooLong(Exception):  # noqa: N818 - a control-flow signal, not an error shown to users
    """A record does not fit `max_length` and the policy (or a too-long first turn) drops it."""


class ConversationEncoder:
    """Encodes `TrainRecord`s for stage 2 (chat template) or stage 1 (plain caption)."""

    def __init__(self, tokenizer: Any, settings: EncoderSettings):
        self.tokenizer = tokenizer
        self.settings = settings
        if settings.image_token_id is not None and not settings.tokens_per_image:
            raise ValueError("tokens_per_image is required for a vision model")

    # ------------------------------------------------------------------------------ stage 2
    def encode_chat(self, record: TrainRecord) -> EncodedSample:
        """Template-rendered ids with loss only on assistant turns (reply + end-of-turn token).

        Raises `RecordError` (id named) when no consistent mask exists, `TooLong` when the
        record does not fit and cannot be truncated at a turn boundary.
        """
        messages = self._prepare_messages(record)
        prefix_ids: list[list[int]] = []  # ids of messages[:k+1], k = 0..n-1
        spans: list[tuple[int, int]] = []
        previous: list[int] = []
        for k, msg in enumerate(messages):
            if msg.role == "assistant":
                head = self._ids(record, messages[:k], generation_prompt=True)
                self._check_prefix(record, previous, head, k)
                full = self._ids(record, messages[: k + 1], generation_prompt=False)
                self._check_prefix(record, head, full, k)
                if len(full) == len(head):
                    raise RecordError(f"record {record.id}: assistant turn {k} produced no tokens; cannot mask it")
                spans.append((len(head), len(full)))
            else:
                full = self._ids(record, messages[: k + 1], generation_prompt=False)
                self._check_prefix(record, previous, full, k)
            prefix_ids.append(full)
            previous = full
        if not spans:
            raise RecordError(f"record {record.id}: no assistant turn, nothing to train on")
        keep = self._turns_that_fit(record, messages, prefix_ids)
        ids = prefix_ids[keep - 1]
        images = tuple(ref for m in messages[:keep] for ref in m.images)
        labels = [IGNORE_INDEX] * len(ids)
        for start, end in spans:
            if end <= len(ids):
                labels[start:end] = ids[start:end]
        return self._expand_images(record, ids, labels, images, truncated=keep < len(messages))

    def _prepare_messages(self, record: TrainRecord) -> list[Message]:
        messages = list(record.messages)
        if record.n_images and self.settings.image_token_id is None:
            raise RecordError(f"record {record.id}: has images but the model is text only")
        try:
            validate_conversation(messages, for_generation=False)
        except ConversationError as exc:
            raise RecordError(f"record {record.id}: {exc}") from None
        if messages[-1].role != "assistant":
            raise RecordError(f"record {record.id}: the last turn is a user turn with no answer to learn")
        if self.settings.steer_language:  # the same hint inference appends, on every user turn
            messages = [
                Message(m.role, f"{m.content}\n\n{LANGUAGE_HINTS[detect_language(m.content)]}", m.images)
                if m.role == "user" and m.content.strip()
                else m
                for m in messages
            ]
        return messages

    def _ids(self, record: TrainRecord, messages: Sequence[Message], *, generation_prompt: bool) -> list[int]:
        try:
            text = (
                render_prompt(
                    messages,
                    self.settings.template,
                    self.tokenizer,
                    steer_language=False,
                    add_generation_prompt=generation_prompt,
                )
                if messages
                else self._render_empty(generation_prompt)
            )
        except ConversationError as exc:
            raise RecordError(f"record {record.id}: {exc}") from None
        # image markers written in the text come out of render_prompt marked as literals: encoded as plain
        # text, as the inference engines encode them (training and inference see the same ids)
        return list(self.tokenizer(text, add_special_tokens=False, sanitize_control_tokens=True)["input_ids"])

    def _render_empty(self, generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            [], chat_template=self.settings.template.jinja, tokenize=False, add_generation_prompt=generation_prompt
        )

    @staticmethod
    def _check_prefix(record: TrainRecord, shorter: list[int], longer: list[int], turn: int) -> None:
        if longer[: len(shorter)] != shorter:
            raise RecordError(
                f"record {record.id}: the chat template renders turns before turn {turn} differently once turn "
                f"{turn} is added, so assistant tokens cannot be located by token spans; refusing to train on it"
            )

    def _expanded_length(self, ids: Sequence[int]) -> int:
        if self.settings.image_token_id is None:
            return len(ids)
        n_img = sum(1 for t in ids if t == self.settings.image_token_id)
        return len(ids) + n_img * (self.settings.tokens_per_image - 1)  # type: ignore[operator]

    def _turns_that_fit(self, record: TrainRecord, messages: Sequence[Message], prefix_ids: list[list[int]]) -> int:
        """How many messages to keep: all, or (truncate) the most that end on an assistant turn and fit."""
        limit = self.settings.max_length
        if self._expanded_length(prefix_ids[-1]) <= limit:
            return len(messages)
        if self.settings.overlong == "truncate":
            for keep in range(len(messages) - 1, 0, -1):
                if messages[keep - 1].role == "assistant" and self._expanded_length(prefix_ids[keep - 1]) <= limit:
                    return keep
        raise TooLong(record.id)

    # ------------------------------------------------------------------------------ stage 1
    def encode_caption(self, record: TrainRecord) -> EncodedSample:
        """LLaVA `plain` format: BOS, image tokens, caption, "\\n"; loss on caption + newline."""
        if self.settings.image_token_id is None:
            raise RecordError(f"record {record.id}: stage 1 needs a vision model (this one is text only)")
        users = [m for m in record.messages if m.role == "user"]
        answers = [m for m in record.messages if m.role == "assistant"]
        if len(users) != 1 or len(answers) != 1 or record.messages[-1].role != "assistant":
            raise RecordError(f"record {record.id}: a stage-1 record is one human turn with the image and one caption")
        images = users[0].images
        if len(images) != 1:
            raise RecordError(f"record {record.id}: a stage-1 record has exactly one image, got {len(images)}")
        caption = answers[0].content.strip()
        if not caption:
            raise RecordError(f"record {record.id}: the caption is empty")
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        head = [*bos, self.settings.image_token_id]
        body = list(self.tokenizer(caption + "\n", add_special_tokens=False)["input_ids"])
        full_length = len(body)
        if self._expanded_length(head) + len(body) > self.settings.max_length:
            if self.settings.overlong != "truncate":
                raise TooLong(record.id)
            # a caption is one turn: truncate its tail, never the image tokens
            body = body[: self.settings.max_length - self._expanded_length(head)]
            if not body:
                raise TooLong(record.id)
        ids = head + body
        labels = [IGNORE_INDEX] * len(head) + body
        return self._expand_images(record, ids, labels, images, truncated=len(body) < full_length)

    # ------------------------------------------------------------------------------ images
    def _expand_images(
        self,
        record: TrainRecord,
        ids: list[int],
        labels: list[int],
        images: tuple[ImageRef, ...],
        *,
        truncated: bool = False,
    ) -> EncodedSample:
        image_id = self.settings.image_token_id
        if image_id is None:
            if images:
                raise RecordError(f"record {record.id}: has images but the model is text only")
            return EncodedSample(record.id, tuple(ids), tuple(labels), (), truncated)
        found = sum(1 for t in ids if t == image_id)
        if found != len(images):
            raise ImageTokenMismatchError(
                f"record {record.id}: {found} {'<image>'} tokens after templating for {len(images)} image(s)"
            )
        per_image = self.settings.tokens_per_image or 0
        out_ids: list[int] = []
        out_labels: list[int] = []
        for token, label in zip(ids, labels, strict=True):
            if token == image_id:
                if label != IGNORE_INDEX:
                    raise RecordError(f"record {record.id}: an image token fell inside an assistant span")
                out_ids.extend([image_id] * per_image)
                out_labels.extend([IGNORE_INDEX] * per_image)
            else:
                out_ids.append(token)
                out_labels.append(label)
        if sum(1 for t in out_ids if t == image_id) != len(images) * per_image:
            raise ImageTokenMismatchError(
                f"record {record.id}: image token count does not match {len(images)} image(s)"
            )
        if not any(x != IGNORE_INDEX for x in out_labels):
            raise RecordError(f"record {record.id}: no token carries a loss after masking")
        return EncodedSample(record.id, tuple(out_ids), tuple(out_labels), images, truncated)


@dataclass(frozen=True)
class EncodeReport:
    """What happened to the records: kept, dropped as too long, truncated."""

    kept: int
    dropped_too_long: int
    truncated: int
    dropped_ids: tuple[str, ...]


def encode_records(
    records: Sequence[TrainRecord], encoder: ConversationEncoder, *, stage: str, progress: bool = True
) -> tuple[list[EncodedSample], EncodeReport]:
    """Encode every record (stage1: captions, stage2: chats); too-long ones are dropped and counted."""
    from tqdm.auto import tqdm

    encode = encoder.encode_caption if stage == "stage1" else encoder.encode_chat
    samples: list[EncodedSample] = []
    dropped: list[str] = []
    truncated = 0
    for record in tqdm(records, desc="tokenizing", unit="rec", disable=not progress, leave=False):
        try:
            sample = encode(record)
        except TooLong:
            dropped.append(record.id)
            continue
        truncated += sample.truncated
        samples.append(sample)
    report = EncodeReport(len(samples), len(dropped), truncated, tuple(dropped))
    if dropped:
        log.warning(
            "dropped %d of %d records longer than max_length=%d (first ids: %s)",
            len(dropped),
            len(records),
            encoder.settings.max_length,
            ", ".join(dropped[:5]),
        )
    if truncated:
        log.warning(
            "truncated %d records at turn boundaries to fit max_length=%d", truncated, encoder.settings.max_length
        )
    if not samples:
        raise RecordError("no training samples left after encoding (all records too long? raise data.max_length)")
    return samples, report
