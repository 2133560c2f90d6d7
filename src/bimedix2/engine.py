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
        # left padding per call: the tokenizer object is shared (training pads on the right)
        common = dict(return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        if self.loaded.has_vision:
            inputs = self.loaded.processor(text=prompts, images=images or None, **common)
        else:
            inputs = self.loaded.tokenizer(prompts, **common)
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

    def stream_batch(self, prepared: Sequence[PreparedBatch], params: Sequence[GenParams]) -> BatchStream:
        """Start one `generate` call for several single-conversation batches from `prepare([conv], p)`.

        Rows must share the sampling settings (temperature, top_p, seed); each keeps its own
        max_new_tokens, stop strings and cancel. Iterate `result.rows[i]` for conversation i's text.
        """
        return BatchStream(self, prepared, params).start()

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
        detok = _IncrementalDetokenizer(self.engine.loaded.tokenizer)
        text = ""  # generated text so far (stop tokens excluded)
        emitted = ""
        stops = set(self.engine.stop_token_ids)
        stopped = False
        all_ids: list[int] = []
        for new_ids in self._drain():
            all_ids.extend(new_ids)
            if stopped:
                continue
            kept = []
            for token in new_ids:
                if token in stops:
                    stopped = True  # generation is over; the final decode below flushes
                    break
                kept.append(token)
            text += detok.add(kept)
            cut = _cut_at_stop(text, self.params.stop)
            visible = text[:cut] if cut is not None else text[: len(text) - _held_back(text, self.params.stop)]
            if len(visible) > len(emitted) and visible.startswith(emitted):
                yield visible[len(emitted) :]
                emitted = visible
        self._wait_for_generation()
        if self._error is not None:
            raise self._error
        reply = self.engine._finish(torch.tensor(all_ids, dtype=torch.long), self.batch, 0, self.params)
        if not reply.text.startswith(emitted):  # cannot happen for prefix-stable decoders; never hide it
            raise RuntimeError("streamed text diverged from the final decode")
        if len(reply.text) > len(emitted):
            yield reply.text[len(emitted) :]
        self.reply = reply

    def _wait_for_generation(self) -> None:
        self._thread.join()

    def _drain(self) -> Iterator[list[int]]:
        """Token ids as they arrive; whatever queued up while the consumer was busy comes as one list."""
        while True:
            ids = self._tokens.queue.get()
            if ids is None:
                return
            while True:
                try:
                    more = self._tokens.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    yield ids
                    return
                ids = ids + more
            yield ids


class _IncrementalDetokenizer:
    """Text deltas in O(1) decode work per step (the prefix/read-offset scheme vLLM uses).

    Decoding a short window that starts a few tokens back keeps SentencePiece's leading-space
    handling and multi-token UTF-8 characters right; a delta ending in U+FFFD waits for more bytes.
    """

    def __init__(self, tokenizer) -> None:  # noqa: ANN001
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, tokens: list[int]) -> str:
        """Append tokens; return the text they complete (possibly empty)."""
        if not tokens:
            return ""
        self.ids.extend(tokens)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return full[len(prefix) :]
        return ""


# ------------------------------------------------------------------------------ batched streaming
# Added for the server's dynamic batching: several independently prepared conversations share
# one `generate` call; each row streams, stops (stop token, own max_new_tokens, own stop
# strings, cancel) and finishes on its own. Existing methods above are unchanged.


def merge_prepared(rows: Sequence[PreparedBatch], pad_token_id: int) -> PreparedBatch:
    """Left-pad single-row batches from `Engine.prepare` into one batch (images concatenated in order)."""
    if not rows:
        raise ValueError("merge_prepared needs at least one prepared row")
    for row in rows:
        if row.inputs["input_ids"].shape[0] != 1:
            raise ValueError("merge_prepared takes single-conversation batches from Engine.prepare([conv], ...)")
    width = max(r.inputs["input_ids"].shape[1] for r in rows)
    merged: dict[str, torch.Tensor] = {}
    for key in sorted(set().union(*(set(r.inputs) for r in rows))):
        parts = [r.inputs[key] for r in rows if key in r.inputs]
        if key == "pixel_values":
            merged[key] = torch.cat(parts, dim=0)
        elif key in ("input_ids", "attention_mask"):
            fill = pad_token_id if key == "input_ids" else 0
            merged[key] = torch.cat(
                [torch.nn.functional.pad(p, (width - p.shape[1], 0), value=fill) for p in parts], dim=0
            )
        else:
            raise ValueError(f"merge_prepared cannot merge input field {key!r}")
    return PreparedBatch(
        merged,
        tuple(r.prompt_tokens[0] for r in rows),
        tuple(r.languages[0] for r in rows),
        max(r.max_new_tokens for r in rows),
    )


class _RowDispatch(StoppingCriteria):
    """Per-row stop decisions, called by `generate` after every step; hands each row's new token to its stream.

    A row ends at a stop token, at its own max_new_tokens, at one of its own stop strings, or when
    cancelled; finished rows are reported as stopped so `generate` pads them (and ends when all are done).
    """

    def __init__(self, engine: Engine, rows: Sequence[RowStream]):
        self.engine = engine
        self.rows = list(rows)
        self.stop_ids = set(engine.stop_token_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()
        done = []
        for row, token in zip(self.rows, last, strict=True):
            if not row.finished:
                row.ids.append(token)
                row._tokens.queue.put([token])
                if (
                    token in self.stop_ids
                    or len(row.ids) >= row.batch.max_new_tokens
                    or row._cancel.is_set()
                    or (row.params.stop and self.engine.decode(row.ids, row.params)[2] == "stop")
                ):
                    row._end()
            done.append(row.finished)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def end_all(self, error: BaseException | None) -> None:
        for row in self.rows:
            if not row.finished:
                row._error = error
                row._end()


class RowStream(TextStream):
    """One conversation's stream inside a `BatchStream`: iterate for text pieces, then read `reply`.

    The pieces join to exactly `reply.text`; `cancel()` ends this row only (the batch goes on).
    """

    def __init__(self, engine: Engine, batch: PreparedBatch, params: GenParams):
        super().__init__(engine, batch, params)
        self.ids: list[int] = []
        self.finished = False
        self._done = threading.Event()

    def start(self) -> None:  # the shared BatchStream thread generates
        raise RuntimeError("a RowStream is started by its BatchStream")

    def _end(self) -> None:
        self.finished = True
        self._done.set()
        self._tokens.end()

    def _wait_for_generation(self) -> None:
        pass  # the shared BatchStream thread generates; a row finishes without waiting for the batch


class BatchStream:
    """Several conversations generated by one `generate` call; `rows[i]` streams conversation i."""

    def __init__(self, engine: Engine, prepared: Sequence[PreparedBatch], params: Sequence[GenParams]):
        if len(prepared) != len(params) or not prepared:
            raise ValueError("stream_batch needs one GenParams per prepared conversation, and at least one")
        keys = {
            (p.sampling, p.temperature if p.sampling else 0.0, p.top_p if p.sampling else 1.0, p.seed) for p in params
        }
        if len(keys) != 1:
            raise ValueError("conversations batched together must share temperature, top_p, sampling and seed")
        self.engine = engine
        self.rows = [RowStream(engine, b, p) for b, p in zip(prepared, params, strict=True)]
        pad = engine.loaded.tokenizer.pad_token_id
        self.batch = merge_prepared(prepared, pad if pad is not None else engine.stop_token_ids[0])
        shared = params[0]
        self.params = GenParams(
            max_new_tokens=self.batch.max_new_tokens,
            temperature=shared.temperature,
            top_p=shared.top_p,
            do_sample=shared.sampling,
            seed=shared.seed,
        )
        self._dispatch = _RowDispatch(engine, self.rows)
        self._thread = threading.Thread(target=self._work, daemon=True)

    def start(self) -> BatchStream:
        self._thread.start()
        return self

    def _work(self) -> None:
        engine = self.engine
        config = engine._generation_config(self.params, self.batch.max_new_tokens)
        error: BaseException | None = None
        try:
            with engine._lock, torch.inference_mode(), torch.random.fork_rng(devices=engine._rng_devices()):
                if self.params.seed is not None:
                    torch.manual_seed(self.params.seed)
                engine.loaded.model.generate(
                    **self.batch.inputs,
                    generation_config=config,
                    stopping_criteria=StoppingCriteriaList([self._dispatch]),
                )
        except BaseException as exc:  # handed to every unfinished row's consumer
            error = exc
        self._dispatch.end_all(error)

    def cancel(self) -> None:
        """Cancel every row."""
        for row in self.rows:
            row.cancel()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the shared `generate` call to end."""
        self._thread.join(timeout)
