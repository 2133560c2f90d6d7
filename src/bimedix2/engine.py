"""Generation: prompt building, image-token contract, batching, streaming, stop handling.

`Engine` wraps transformers' `generate` (sampling, KV cache, stopping) and adds what chat
needs around it: templating, image loading, context checks, per-turn language, incremental
UTF-8-safe streaming and cancellation.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .conversation import detect_language, last_user_language, render_prompt, validate_conversation
from .errors import ContextTooLongError, ImageTokenMismatchError, NoVisionError
from .images import DEFAULT_LIMITS, ImageLimits, load_image, pad_to_square
from .model.loader import LoadedModel
from .types import GenParams, Message, Reply

NO_VISION_HINT = (
    "{name} is a text-only model and has no vision encoder, so it cannot read images. "
    "Load a BiMediX2 vision checkpoint, e.g. `--model MBZUAI/BiMediX2-8B-hf` or a local "
    "directory holding one (llava_llama checkpoints such as MBZUAI/BiMediX2-8B load too)."
)


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for a batch of conversations, plus what is needed to decode the outputs."""

    inputs: dict[str, torch.Tensor]
    prompt_tokens: tuple[int, ...]
    languages: tuple[str, ...]
    max_new_tokens: int


class Engine:
    """Chat generation over a loaded model. Thread-safe for one generation at a time."""

    def __init__(self, loaded: LoadedModel, *, limits: ImageLimits = DEFAULT_LIMITS, max_context: int | None = None):
        self.loaded = loaded
        self.limits = limits
        text_config = loaded.model.config.get_text_config()
        self.max_context = max_context or getattr(text_config, "max_position_embeddings", None) or 4096
        vocab = loaded.tokenizer.get_vocab()
        self.stop_token_ids = sorted({vocab[t] for t in loaded.template.stop_tokens if t in vocab})
        if not self.stop_token_ids and loaded.tokenizer.eos_token_id is not None:
            self.stop_token_ids = [loaded.tokenizer.eos_token_id]
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------- preparation
    def render(self, messages: Sequence[Message], params: GenParams = GenParams()) -> str:
        """The exact prompt string for a conversation (validated)."""
        validate_conversation(messages, self.limits)
        if any(m.images for m in messages) and not self.loaded.has_vision:
            raise NoVisionError(NO_VISION_HINT.format(name=self.loaded.info.name))
        return render_prompt(messages, self.loaded.template, self.loaded.tokenizer, steer_language=params.steer_language)

    def prepare(
        self,
        conversations: Sequence[Sequence[Message]],
        params: GenParams,
        sample_ids: Sequence[str] | None = None,
    ) -> PreparedBatch:
        """Render, load images, tokenize with left padding, and check image tokens and context."""
        ids = list(sample_ids) if sample_ids is not None else [f"#{i}" for i in range(len(conversations))]
        prompts = [self.render(conv, params) for conv in conversations]
        images = [self._load(ref) for conv in conversations for m in conv for ref in m.images]
        tokenizer = self.loaded.tokenizer
        tokenizer.padding_side = "left"
        if self.loaded.has_vision:
            inputs = self.loaded.processor(
                text=prompts, images=images or None, return_tensors="pt", padding=True, add_special_tokens=False
            )
        else:
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = dict(inputs)
        if self.loaded.has_vision:
            self._check_image_tokens(inputs["input_ids"], conversations, ids)
        lengths = tuple(int(n) for n in inputs["attention_mask"].sum(dim=1))
        longest = max(lengths)
        if longest >= self.max_context:
            which = ids[lengths.index(longest)]
            raise ContextTooLongError(
                f"sample {which}: the prompt is {longest} tokens; the model's context is {self.max_context} "
                "tokens. Shorten the conversation or send fewer images."
            )
        max_new = min(params.max_new_tokens, self.max_context - longest)
        device = self.loaded.device
        moved = {k: v.to(device) for k, v in inputs.items()}
        if "pixel_values" in moved:
            moved["pixel_values"] = moved["pixel_values"].to(self.loaded.model.dtype)
        languages = tuple(last_user_language(conv) for conv in conversations)
        return PreparedBatch(moved, lengths, languages, max_new)

    def _load(self, ref):  # noqa: ANN001, ANN202 - ImageRef -> PIL image
        image = load_image(ref, self.limits)
        return pad_to_square(image) if self.loaded.image_aspect_ratio == "pad" else image

    def _check_image_tokens(
        self, input_ids: torch.Tensor, conversations: Sequence[Sequence[Message]], ids: Sequence[str]
    ) -> None:
        per_image = self.loaded.tokens_per_image
        for row, conv, sample_id in zip(input_ids, conversations, ids, strict=True):
            n_images = sum(len(m.images) for m in conv)
            found = int((row == self.loaded.image_token_id).sum())
            if found != n_images * per_image:
                raise ImageTokenMismatchError(
                    f"sample {sample_id}: {found} image tokens in the prompt for {n_images} image(s) of "
                    f"{per_image} features each (expected {n_images * per_image})"
                )

    # ------------------------------------------------------------------------------- generation
    def generate(self, messages: Sequence[Message], params: GenParams = GenParams()) -> Reply:
        """One reply to one conversation."""
        return self.generate_batch([messages], params)[0]

    def generate_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        params: GenParams = GenParams(),
        sample_ids: Sequence[str] | None = None,
    ) -> list[Reply]:
        """Replies to several conversations in one left-padded batch."""
        batch = self.prepare(conversations, params, sample_ids)
        output = self._run(batch, params, streamer=None, cancel=None)
        return [self._finish(row, batch, i, params) for i, row in enumerate(output)]

    def stream(self, messages: Sequence[Message], params: GenParams = GenParams()) -> TextStream:
        """Start generating one reply; iterate the result for text pieces as they are decoded."""
        batch = self.prepare([messages], params)
        stream = TextStream(self, batch, params)
        stream.start()
        return stream

    def _run(
        self, batch: PreparedBatch, params: GenParams, streamer: BaseStreamer | None, cancel: threading.Event | None
    ) -> torch.Tensor:
        config = self._generation_config(params, batch.max_new_tokens)
        criteria = StoppingCriteriaList([_Cancelled(cancel)]) if cancel is not None else None
        extra = {"stop_strings": list(params.stop), "tokenizer": self.loaded.tokenizer} if params.stop else {}
        with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=self._rng_devices()):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            output = self.loaded.model.generate(
                **batch.inputs, generation_config=config, streamer=streamer, stopping_criteria=criteria, **extra
            )
        return output[:, batch.inputs["input_ids"].shape[1] :]

    def _rng_devices(self) -> list[int]:
        device = self.loaded.device
        return [device.index or 0] if device.type == "cuda" else []

    def _generation_config(self, params: GenParams, max_new_tokens: int) -> GenerationConfig:
        tokenizer = self.loaded.tokenizer
        kwargs: dict[str, object] = dict(
            max_new_tokens=max_new_tokens,
            do_sample=params.sampling,
            eos_token_id=self.stop_token_ids,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_token_ids[0],
        )
        if params.sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=None)
        if self.loaded.image_token_id is not None:
            kwargs["suppress_tokens"] = [self.loaded.image_token_id]  # a placeholder is never an answer
        return GenerationConfig(**kwargs)

    def _finish(self, row: torch.Tensor, batch: PreparedBatch, index: int, params: GenParams) -> Reply:
        text, n_tokens, finish = self.decode(row.tolist(), params)
        if finish == "length" and n_tokens < batch.max_new_tokens:
            finish = "stop"  # ended by a stop string inside generate
        return Reply(
            text=text,
            language=detect_language(text) if text.strip() else batch.languages[index],  # type: ignore[arg-type]
            prompt_tokens=batch.prompt_tokens[index],
            completion_tokens=n_tokens,
            finish_reason=finish,
        )

    def decode(self, token_ids: list[int], params: GenParams) -> tuple[str, int, str]:
        """Text of generated ids up to the first stop token / stop string; (text, tokens, finish)."""
        pad = self.loaded.tokenizer.pad_token_id
        stops = set(self.stop_token_ids)
        kept: list[int] = []
        finish = "length"
        for token in token_ids:
            if token in stops:
                finish = "stop"
                break
            kept.append(token)
        n_tokens = len(kept) + (1 if finish == "stop" else 0)
        while kept and kept[-1] == pad and pad not in stops:
            kept.pop()
        text = self.loaded.tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cut = _cut_at_stop(text, params.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        return text, n_tokens, finish


def _cut_at_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters to hold back: an incomplete UTF-8 character or a stop-string prefix."""
    hold = 1 if text.endswith("\ufffd") else 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return hold


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event | None):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        stop = self.event is not None and self.event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _TokenQueue(BaseStreamer):
    """Receives token ids from `generate` (the prompt first, then one step at a time)."""

    def __init__(self) -> None:
        self.queue: queue.Queue[list[int] | None] = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(None)


class TextStream:
    """Iterate for text pieces; afterwards `reply` holds the finished `Reply`.

    The pieces concatenate to exactly `reply.text`, the same text `Engine.generate` returns
    for the same inputs. `cancel()` stops generation at the next token.
    """

    def __init__(self, engine: Engine, batch: PreparedBatch, params: GenParams):
        self.engine = engine
        self.batch = batch
        self.params = params
        self.reply: Reply | None = None
        self._tokens = _TokenQueue()
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Stop generating as soon as the current step ends."""
        self._cancel.set()

    def _work(self) -> None:
        try:
            self.engine._run(self.batch, self.params, self._tokens, self._cancel)
        except BaseException as exc:  # re-raised in the consumer's thread
            self._error = exc
            self._tokens.end()

    def __iter__(self) -> Iterator[str]:
        ids: list[int] = []
        emitted = ""
        stops = set(self.engine.stop_token_ids)
        while True:
            step = self._tokens.queue.get()
            if step is None:
                break
            ids.extend(step)
            if any(t in stops for t in step):
                continue  # generation is over; the final decode below flushes
            text, _, _ = self.engine.decode(ids, self.params)
            visible = text[: len(text) - _held_back(text, self.params.stop)]
            if len(visible) > len(emitted) and visible.startswith(emitted):
                yield visible[len(emitted) :]
                emitted = visible
        self._thread.join()
        if self._error is not None:
            raise self._error
        reply = self.engine._finish(torch.tensor(ids, dtype=torch.long), self.batch, 0, self.params)
        if reply.text.startswith(emitted) and len(reply.text) > len(emitted):
            yield reply.text[len(emitted) :]
        self.reply = reply
