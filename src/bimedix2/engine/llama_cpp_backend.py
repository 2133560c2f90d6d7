"""The llama.cpp backend: in-process generation through llama-cpp-python's C API on a `LlamaCppModel`.

Each row of a batch is its own sequence in one llama.cpp context (`n_seq_max` = the model's
`LlamaCppOptions.parallel`, a KV cache per sequence): prompts are evaluated row by row (text
through `llama_decode`, images through libmtmd), then every step decodes one token of every
live row in a single `llama_batch`, so rows really run together rather than queueing. Each row
samples with its own llama.cpp sampler chain (greedy, or temperature -> top-p -> seeded draw), so
a seeded row gives the same tokens whatever else is in its batch. It is a `ContinuousBackend`:
a sequence slot is admitted (prefilled) between decoding steps and released (its KV cells
removed with `llama_memory_seq_rm`) the moment its row ends, so newcomers join a running batch.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..conversation import IMAGE_PLACEHOLDER, split_literals
from ..errors import ConfigError, ModelLoadError
from ..model.llama_cpp import LlamaCppModel
from ..model.llama_cpp_images import Chunk, ImageChunks
from ..model.llama_cpp_lib import clear_errors, with_errors
from .backend import PreparedBatch, Sampling, StepFn, Steps, drive, register_backend, template_stop_ids

if TYPE_CHECKING:
    from ..model.base import LoadedModel

RELEASED_TOP_K = 50  # transformers' default, which the released generate() call left in place


@dataclass(frozen=True)
class PromptRow:
    """One prompt as llama.cpp evaluates it: text-token and image chunks in order (images kept alive)."""

    pieces: tuple[Chunk, ...]
    ids: tuple[int, ...]  # text ids, with `image_token_id` once per image token (the engine counts them)
    images: tuple[ImageChunks, ...] = ()


@dataclass
class _Slot:
    """A running sequence: its sampler chain, next KV position and newest token (not yet evaluated)."""

    sampler: Any
    position: int
    newest: int


@register_backend("llama-cpp")
class LlamaCppBackend:
    """Generation with llama.cpp on a GGUF loaded by `bimedix2.model.llama_cpp.load_llama_cpp`."""

    def __init__(self, loaded: LoadedModel) -> None:
        if not isinstance(loaded, LlamaCppModel) or loaded.handle is None or loaded.handle.model is None:
            raise ConfigError(
                f"the llama-cpp engine runs GGUF files loaded with load_llama_cpp (--engine llama-cpp --model "
                f"FILE.gguf); {loaded.info.name} was loaded by the {loaded.info.source_format!r} format"
            )
        self.loaded = loaded
        self.handle = loaded.handle
        self.lib = loaded.handle.lib
        self.tokenizer = loaded.tokenizer
        self.stop_token_ids = template_stop_ids(loaded.tokenizer, loaded.template)
        options = loaded.options
        trained = int(self.lib.llama_model_n_ctx_train(self.handle.model))
        self.context_length: int | None = min(options.context or trained, trained) if trained else options.context
        self.parallel = max(1, options.parallel)
        self.n_batch = max(1, options.batch)
        self.n_vocab = len(loaded.tokenizer)
        self.ctx = self._new_context()
        self._slots: dict[int, _Slot] = {}  # sequence id -> running sequence
        self.batch = self.lib.llama_batch_init(max(self.n_batch, self.parallel), 0, 1)

    def _new_context(self) -> Any:
        lib, options = self.lib, self.loaded.options
        params = lib.llama_context_default_params()
        params.n_ctx = (self.context_length or 4096) * self.parallel
        params.n_batch = self.n_batch
        params.n_ubatch = min(self.n_batch, 512)
        params.n_seq_max = self.parallel
        params.kv_unified = False  # a KV stream per sequence: rows share no prefix
        # llama.cpp's default ("auto") turns flash attention on for the CPU, where this build gives wrong
        # tokens with quantized weights (SmolLM2 Q8_0 answers in French); off, as llama-cpp-python's Llama
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.n_threads = params.n_threads_batch = options.n_threads()
        params.no_perf = True
        clear_errors()
        ctx = lib.llama_init_from_model(self.handle.model, params)
        if not ctx:
            raise ModelLoadError(
                with_errors(
                    f"llama.cpp could not create a context of {params.n_ctx} tokens ({self.parallel} sequence(s) of "
                    f"{self.context_length}) for {self.handle.path.name}; lower --ctx-size or --parallel"
                )
            )
        return ctx

    def close(self) -> None:
        """Free the context and the batch (idempotent); the model stays loaded."""
        if getattr(self, "ctx", None) is not None:
            for slot in list(self._slots):
                self.release(slot)
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # --------------------------------------------------------------------------------- prompts
    def encode(self, prompts: Sequence[str], images: Sequence[Any]) -> dict[str, Any]:
        """Prompt rows (text via llama.cpp's tokenizer, images via libmtmd) plus left-padded ids for the engine."""
        pending = iter(images)
        rows = [self._encode_one(prompt, pending) for prompt in prompts]
        return self._inputs(rows)

    def _encode_one(self, prompt: str, images: Any) -> PromptRow:
        pieces: list[Chunk] = []
        ids: list[int] = []
        held: list[ImageChunks] = []
        for text, literal in self._text_pieces(prompt):
            if text is None:
                chunks = self._image_chunks(next(images))
                held.append(chunks)
                for piece in chunks.pieces:
                    pieces.append(piece)
                    ids.extend(piece.tokens or [self.loaded.image_token_id] * piece.n_tokens)
                continue
            tokens = tuple(self.tokenizer.encode(text, split_special_tokens=literal))
            pieces.append(Chunk(tokens=tokens))
            ids.extend(tokens)
        return PromptRow(tuple(pieces), tuple(ids), tuple(held))

    @staticmethod
    def _text_pieces(prompt: str) -> list[tuple[str | None, bool]]:
        """(text, literal) pieces of a rendered prompt, (None, False) for each image slot.

        Image markers written in message text arrive marked (`split_literals`) and are tokenized
        with special-token parsing off; only the template's own `<image>` become image slots.
        """
        out: list[tuple[str | None, bool]] = []
        for text, literal in split_literals(prompt):
            if literal:
                out.append((text, True))
                continue
            for k, part in enumerate(text.split(IMAGE_PLACEHOLDER)):
                if k:
                    out.append((None, False))
                if part:
                    out.append((part, False))
        return out

    def _image_chunks(self, image: Any) -> ImageChunks:
        size = self.loaded.image_size
        if size is None:
            raise ConfigError(f"{self.loaded.info.name} has no vision projector; pass --mmproj")
        return ImageChunks.of_image(self.handle, image, size)

    def _inputs(self, rows: Sequence[PromptRow]) -> dict[str, Any]:
        import numpy as np  # not torch: the llama.cpp engine runs without importing it (~250 MB less)

        width = max(len(r.ids) for r in rows)
        pad = self.stop_token_ids[0] if self.stop_token_ids else 0
        ids = [[pad] * (width - len(r.ids)) + list(r.ids) for r in rows]
        mask = [[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows]
        return {
            "input_ids": np.array(ids, dtype=np.int64),
            "attention_mask": np.array(mask, dtype=np.int64),
            "rows": tuple(rows),
        }

    def merge(self, rows: Sequence[PreparedBatch]) -> PreparedBatch:
        """One batch of the prompt rows of single-conversation batches."""
        if not rows:
            raise ValueError("merge needs at least one prepared row")
        prompt_rows = [r for batch in rows for r in batch.inputs["rows"]]
        if len(prompt_rows) != len(rows):
            raise ValueError("merge takes single-conversation batches from Engine.prepare([conv], ...)")
        return PreparedBatch(
            self._inputs(prompt_rows),
            tuple(r.prompt_tokens[0] for r in rows),
            tuple(r.languages[0] for r in rows),
            max(r.max_new_tokens for r in rows),
        )

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids, special tokens left out."""
        return self.tokenizer.decode(token_ids)

    # ------------------------------------------------------------------------------ generation
    def generate(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling, step: StepFn) -> None:
        """Prefill every row as its own sequence, then decode all live rows together, one token a step."""
        drive(self.steps(inputs, max_new_tokens=max_new_tokens, sampling=sampling), step)

    def steps(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling) -> Steps:
        """`generate` as a generator: yields each step's newest tokens, is sent which rows have ended.

        A row that ends leaves at once (its slot is released); the others go on."""
        rows: tuple[PromptRow, ...] = inputs["rows"]
        if len(rows) > self.parallel:
            raise ConfigError(
                f"{len(rows)} conversations in one batch, but the llama.cpp context holds {self.parallel} parallel "
                "sequence(s); lower the batch size or raise --parallel"
            )
        held: list[int] = []  # row i's slot, while the row runs
        try:
            newest = []
            for row in rows:
                slot, token = self._admit_row(row, sampling)
                held.append(slot)
                newest.append(token)
            done = list((yield list(newest)))
            for _ in range(max_new_tokens - 1):
                for i, ended in enumerate(done):
                    if ended:
                        self.release(held[i])
                live = [i for i, ended in enumerate(done) if not ended]
                if not live:
                    return
                for i, token in zip(live, self.step([held[i] for i in live]), strict=True):
                    newest[i] = token
                done = list((yield list(newest)))
        finally:
            for slot in held:
                self.release(slot)

    @property
    def slots(self) -> int:
        """Sequences that can run at once (`LlamaCppOptions.parallel`)."""
        return self.parallel

    def admit(self, inputs: dict[str, Any], sampling: Sampling) -> tuple[int, int]:
        """Prefill the one prompt of `inputs` into a free sequence slot; (slot, first token)."""
        rows: tuple[PromptRow, ...] = inputs["rows"]
        if len(rows) != 1:
            raise ValueError(f"admit takes one conversation from Engine.prepare([conv], ...), not {len(rows)}")
        return self._admit_row(rows[0], sampling)

    def _admit_row(self, row: PromptRow, sampling: Sampling) -> tuple[int, int]:
        free = next((seq for seq in range(self.parallel) if seq not in self._slots), None)
        if free is None:
            raise ConfigError(
                f"all {self.parallel} parallel sequence(s) of the llama.cpp context are busy; raise --parallel"
            )
        lib = self.lib
        lib.llama_memory_seq_rm(lib.llama_get_memory(self.ctx), free, -1, -1)  # positions only: no memset
        sampler = self._sampler(sampling)
        try:
            position = self._prefill(row, free)
            token = int(lib.llama_sampler_sample(sampler, self.ctx, -1))
        except BaseException:
            lib.llama_sampler_free(sampler)
            lib.llama_memory_seq_rm(lib.llama_get_memory(self.ctx), free, -1, -1)
            raise
        self._slots[free] = _Slot(sampler, position, token)
        return free, token

    def step(self, slots: Sequence[int]) -> list[int]:
        """One `llama_decode` of the newest token of every slot in `slots`; each slot samples its next token."""
        if not slots:
            return []
        states = [self._slots[s] for s in slots]
        self._fill([(st.newest, st.position, s, True) for s, st in zip(slots, states, strict=True)])
        self._decode(f"decoding a step of {len(slots)} row(s)")
        for j, st in enumerate(states):
            st.newest = int(self.lib.llama_sampler_sample(st.sampler, self.ctx, j))
            st.position += 1
        return [st.newest for st in states]

    def release(self, slot: int) -> None:
        """Free `slot`'s sampler and KV cells so the next admission reuses it."""
        state = self._slots.pop(slot, None)
        if state is None:
            return
        self.lib.llama_sampler_free(state.sampler)
        if self.ctx is not None:
            self.lib.llama_memory_seq_rm(self.lib.llama_get_memory(self.ctx), slot, -1, -1)

    def _prefill(self, row: PromptRow, seq: int) -> int:
        """Evaluate one prompt as sequence `seq`, logits for its last token; returns the next position."""
        if not row.pieces or row.pieces[-1].image is not None:
            raise ValueError("a prompt must end with text (the assistant header) after its images")
        pos = 0
        last = len(row.pieces) - 1
        for k, piece in enumerate(row.pieces):
            if piece.image is not None:
                pos = self._eval_image(piece, pos, seq)
                continue
            tokens = piece.tokens
            for start in range(0, len(tokens), self.n_batch):
                part = tokens[start : start + self.n_batch]
                final = k == last and start + len(part) == len(tokens)
                self._fill([(t, pos + j, seq, final and j == len(part) - 1) for j, t in enumerate(part)])
                self._decode(f"evaluating a prompt of {len(row.ids)} tokens")
                pos += len(part)
        return pos

    def _eval_image(self, piece: Chunk, pos: int, seq: int) -> int:
        mtmd = self.handle.mtmd
        new_pos = self.lib.llama_pos(0)
        with self.handle.lock:
            clear_errors()
            status = mtmd.mtmd_helper_eval_chunk_single(
                self.handle.vision, self.ctx, piece.image, pos, seq, self.n_batch, False, ctypes.byref(new_pos)
            )
        if status != 0:
            raise RuntimeError(with_errors(f"libmtmd could not encode an image of {piece.n_tokens} tokens ({status})"))
        return int(new_pos.value)

    def _fill(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Put (token, position, sequence, wants logits) entries into the reusable llama_batch."""
        batch = self.batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(entries)

    def _decode(self, what: str) -> None:
        clear_errors()
        status = self.lib.llama_decode(self.ctx, self.batch)
        if status == 1:
            raise RuntimeError(with_errors(f"llama.cpp ran out of KV cache {what}; raise --ctx-size"))
        if status != 0:
            raise RuntimeError(with_errors(f"llama_decode failed ({status}) {what}"))

    def _sampler(self, sampling: Sampling) -> Any:
        """Sampler chain: the image placeholder banned, then greedy, or temperature -> top-k -> top-p -> seeded draw."""
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        banned = self.loaded.image_token_id
        if banned is not None and 0 <= banned < self.n_vocab:
            bias = (lib.llama_logit_bias * 1)(lib.llama_logit_bias(banned, float("-inf")))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_logit_bias(self.n_vocab, 1, bias))
        if not sampling.do_sample:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(sampling.temperature))
        # top-k 50 then top-p, the order and k transformers sampled with in the released code
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(RELEASED_TOP_K))
        if sampling.top_p < 1.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(sampling.top_p, 1))
        seed = lib.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed & 0xFFFFFFFF
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain
