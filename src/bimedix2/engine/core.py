"""`Engine`: chat generation over a loaded model through one generation path.

The engine adds what chat needs around a backend: templating, image loading, context checks,
per-turn language, the image-token contract, stop strings, UTF-8-safe streaming and
cancellation. `generate`, `generate_batch`, `stream` and `stream_batch` all build `Row`s and
run them through `_run`, so the CLI and the server share one code path; `continuous()` runs the
same `Row`s on a backend that admits them between decoding steps.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Generator, Sequence
from typing import Any

from ..conversation import last_user_language, render_prompt, validate_conversation
from ..errors import ContextTooLongError, ImageTokenMismatchError, NoVisionError
from ..images import DEFAULT_LIMITS, ImageLimits, load_image, pad_to_square
from ..model.base import LoadedModel
from ..types import GenParams, ImageRef, Message, Reply
from .backend import ContinuousBackend, GenerationBackend, PreparedBatch, ResumableBackend, Sampling, get_backend
from .continuous import ContinuousBatch
from .streams import BatchStream, Row, TextStream, cut_at_stop

NO_VISION_HINT = (
    "{name} is a text-only model and has no vision encoder, so it cannot read images. "
    "Load a BiMediX2 vision checkpoint, e.g. `--model MBZUAI/BiMediX2-8B-hf` or a local "
    "directory holding one (llava_llama checkpoints such as MBZUAI/BiMediX2-8B load too)."
)


class Engine:
    """Chat generation over a loaded model. Thread-safe; one generation run at a time."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_context: int | None = None,
        backend: str = "transformers",
    ):
        self.loaded = loaded
        self.limits = limits
        self.backend: GenerationBackend = get_backend(backend)(loaded)
        self.max_context = max_context or self.backend.context_length or 4096
        self.stop_token_ids = list(self.backend.stop_token_ids)
        self.stop_token_set = frozenset(self.stop_token_ids)
        self._lock = threading.Lock()
        self._paused_on: int | None = None  # the thread whose stream holds the engine between steps

    # ----------------------------------------------------------------------------- preparation
    def render(self, messages: Sequence[Message], params: GenParams = GenParams()) -> str:
        """The exact prompt string for a conversation (validated)."""
        validate_conversation(messages, self.limits)
        if any(m.images for m in messages) and not self.loaded.has_vision:
            raise NoVisionError(NO_VISION_HINT.format(name=self.loaded.info.name))
        return render_prompt(
            messages, self.loaded.template, self.loaded.tokenizer, steer_language=params.steer_language
        )

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
        inputs = self.backend.encode(prompts, images)
        if self.loaded.has_vision:
            self._check_image_tokens(inputs["input_ids"], conversations, ids)
        lengths = tuple(int(n) for n in inputs["attention_mask"].sum(1).tolist())  # torch or numpy
        longest = max(lengths)
        if longest >= self.max_context:
            which = ids[lengths.index(longest)]
            raise ContextTooLongError(
                f"sample {which}: the prompt is {longest} tokens; the model's context is {self.max_context} "
                "tokens. Shorten the conversation or send fewer images."
            )
        max_new = min(params.max_new_tokens, self.max_context - longest)
        languages = tuple(last_user_language(conv) for conv in conversations)
        return PreparedBatch(inputs, lengths, languages, max_new)

    def _load(self, ref: ImageRef) -> Any:
        image = load_image(ref, self.limits)
        return pad_to_square(image) if self.loaded.image_aspect_ratio == "pad" else image

    def _check_image_tokens(
        self, input_ids: Any, conversations: Sequence[Sequence[Message]], ids: Sequence[str]
    ) -> None:
        per_image = self.loaded.tokens_per_image
        found_per_row = (input_ids == self.loaded.image_token_id).sum(1).tolist()
        for found, conv, sample_id in zip(found_per_row, conversations, ids, strict=True):
            n_images = sum(len(m.images) for m in conv)
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
        rows = [self._row(batch, i, params, streamed=False) for i in range(len(conversations))]
        self._run(batch, Sampling.of(params), rows)
        return [row.result() for row in rows]

    def stream(self, messages: Sequence[Message], params: GenParams = GenParams()) -> TextStream:
        """Start generating one reply; iterate the result for text pieces as they are decoded.

        On a backend that can pause between steps (llama.cpp) the reply is generated on the
        reading thread as it is read: the engine is held until the stream is read to its end,
        cancelled or closed (dropping it closes it). Otherwise a background thread generates.
        """
        batch = self.prepare([messages], params)
        row = self._row(batch, 0, params, streamed=True)
        if isinstance(self.backend, ResumableBackend):
            return TextStream(row, steps=self._steps(batch, Sampling.of(params), [row]))
        run = functools.partial(self._run, batch, Sampling.of(params))
        return BatchStream(run, [row], wait_for_run=True).start().rows[0]

    def stream_batch(self, prepared: Sequence[PreparedBatch], params: Sequence[GenParams]) -> BatchStream:
        """Start one generation run for several single-conversation batches from `prepare([conv], p)`.

        Rows must share the sampling settings (temperature, top_p, seed); each keeps its own
        max_new_tokens, stop strings and cancel. Iterate `result.rows[i]` for conversation i's text.
        """
        if len(prepared) != len(params) or not prepared:
            raise ValueError("stream_batch needs one GenParams per prepared conversation, and at least one")
        sampling = {Sampling.of(p) for p in params}
        if len(sampling) != 1:
            raise ValueError("conversations batched together must share temperature, top_p, sampling and seed")
        rows = [self._row(b, 0, p, streamed=True) for b, p in zip(prepared, params, strict=True)]
        run = functools.partial(self._run, self.backend.merge(prepared), sampling.pop())
        return BatchStream(run, rows).start()

    @property
    def continuous_batching(self) -> bool:
        """Whether the backend admits rows between decoding steps (`continuous()` works)."""
        return isinstance(self.backend, ContinuousBackend)

    def continuous(self) -> ContinuousBatch:
        """A batch that conversations join between decoding steps (`admit`) and leave as they end.

        Rows may differ in every setting (each samples on its own); the engine is held while any
        row is live. A backend without continuous batching is a ConfigError."""
        return ContinuousBatch(self)

    def _row(self, batch: PreparedBatch, index: int, params: GenParams, *, streamed: bool) -> Row:
        return Row(
            self,
            params,
            max_new_tokens=batch.max_new_tokens,
            prompt_tokens=batch.prompt_tokens[index],
            language=batch.languages[index],
            streamed=streamed,
        )

    def _run(self, batch: PreparedBatch, sampling: Sampling, rows: Sequence[Row]) -> None:
        """The one generation path: run `rows` (one per row of `batch`) through the backend."""
        for _ in self._steps(batch, sampling, rows):
            pass

    def _steps(self, batch: PreparedBatch, sampling: Sampling, rows: Sequence[Row]) -> Generator[None, None, None]:
        """`_run`, pausing after every step where the backend can (`ResumableBackend`); closing it stops."""

        def step(newest: Sequence[int]) -> list[bool]:
            return [row.push(token) for row, token in zip(rows, newest, strict=True)]

        if self._paused_on == threading.get_ident():  # waiting for the lock would wait for ourselves
            raise RuntimeError(
                "a reply streamed on this thread is unfinished: read it to the end or close() it before another"
            )
        with self._lock:
            if not isinstance(self.backend, ResumableBackend):
                self.backend.generate(batch.inputs, max_new_tokens=batch.max_new_tokens, sampling=sampling, step=step)
            else:
                params = {"max_new_tokens": batch.max_new_tokens, "sampling": sampling}
                with contextlib.closing(self.backend.steps(batch.inputs, **params)) as steps:
                    try:
                        newest = next(steps)
                        while True:
                            ended = step(newest)
                            self._paused_on = threading.get_ident()
                            try:
                                yield
                            finally:
                                self._paused_on = None
                            newest = steps.send(ended)
                    except StopIteration:
                        pass
        for row in rows:
            row.end()

    def decode(self, token_ids: Sequence[int], params: GenParams) -> tuple[str, int, str]:
        """Text of generated ids up to the first stop token / stop string; (text, tokens, finish)."""
        kept: list[int] = []
        finish = "length"
        for token in token_ids:
            if token in self.stop_token_set:
                finish = "stop"
                break
            kept.append(token)
        n_tokens = len(kept) + (1 if finish == "stop" else 0)
        text = self.backend.decode(kept)
        cut = cut_at_stop(text, params.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        elif text.endswith("\ufffd"):  # a reply cut inside a multi-byte character never shows half of it
            text = text[:-1]
        return text, n_tokens, finish
