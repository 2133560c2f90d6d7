"""The engine backend interface: what turns tokenized prompts into generated tokens, and the registry.

`Engine` owns everything that does not depend on the runtime (templating, images, context
checks, stop strings, streaming); a backend owns the runtime: tokenizing prompts and images into
model inputs, generating one step at a time, and turning token ids back into text. A new backend
is one module with one class and one `@register_backend("name")` line; `Engine(loaded,
backend="name")` selects it.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ..errors import ConfigError
from ..types import GenParams

if TYPE_CHECKING:
    from ..conversation import ChatTemplate
    from ..model.base import LoadedModel

StepFn = Callable[[Sequence[int]], Sequence[bool]]
"""Called after every generation step with each row's newest token id; returns which rows have ended."""

Steps = Generator[Sequence[int], Sequence[bool], None]
"""A generation run that pauses after every step: yields each row's newest token id and is sent
back which rows have ended (`ResumableBackend.steps`)."""


@dataclass(frozen=True)
class PreparedBatch:
    """Model inputs for a batch of conversations, plus what is needed to decode the outputs.

    `inputs` is the backend's own; it holds at least `input_ids` and `attention_mask`
    (one left-padded row per conversation).
    """

    inputs: dict[str, Any]
    prompt_tokens: tuple[int, ...]
    languages: tuple[str, ...]
    max_new_tokens: int


@dataclass(frozen=True)
class Sampling:
    """Decoding settings shared by every row of one generation run."""

    do_sample: bool
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @classmethod
    def of(cls, params: GenParams) -> Sampling:
        """The run-wide part of `params` (temperature and top_p only count when sampling)."""
        if params.sampling:
            return cls(True, params.temperature, params.top_p, params.seed)
        return cls(False, seed=params.seed)


class GenerationBackend(Protocol):
    """Turns prompts into model inputs and model inputs into tokens, one step at a time.

    Token ids are the backend's own: the engine only compares them with `stop_token_ids`,
    counts them, and hands them back to `decode`.
    """

    stop_token_ids: tuple[int, ...]
    context_length: int | None  # the model's context window in tokens, if it knows one

    def encode(self, prompts: Sequence[str], images: Sequence[Any]) -> dict[str, Any]:
        """Model inputs for rendered prompts (left-padded) and their images, in prompt order."""
        ...

    def merge(self, rows: Sequence[PreparedBatch]) -> PreparedBatch:
        """One batch from single-conversation batches that were prepared on their own."""
        ...

    def generate(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling, step: StepFn) -> None:
        """Generate for every row of `inputs`, calling `step` after each token.

        Rows that `step` reports ended take no more tokens; return once every row has ended or
        after `max_new_tokens` steps. Runs on the caller's thread; the engine serialises calls.
        """
        ...

    def decode(self, token_ids: Sequence[int]) -> str:
        """The text of generated token ids, special tokens left out."""
        ...


@runtime_checkable
class ResumableBackend(GenerationBackend, Protocol):
    """A backend whose generation loop can pause between steps, so a single stream is generated on
    the reading thread (no hand-off between threads per token; on a machine whose cores are all busy
    with the runtime's own threads, that hand-off costs a large share of decode speed)."""

    def steps(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling) -> Steps:
        """`generate` as a generator; the engine closes it early to stop."""
        ...


@runtime_checkable
class ContinuousBackend(GenerationBackend, Protocol):
    """A backend whose sequences join and leave a running batch between decoding steps
    (continuous batching): each conversation holds one of `slots` sequence slots from `admit`
    until `release`, and every `step` advances all the slots it is given by one token."""

    slots: int  # how many sequences can run at once

    def admit(self, inputs: dict[str, Any], sampling: Sampling) -> tuple[int, int]:
        """Evaluate the one prompt of `inputs` in a free slot; (slot, its first generated token id)."""
        ...

    def step(self, slots: Sequence[int]) -> list[int]:
        """Decode one token for each of `slots` (each continues from its newest token); their new token ids."""
        ...

    def release(self, slot: int) -> None:
        """Free `slot` (its KV cache and sampler) for the next admission; no-op for a free slot."""
        ...


@contextlib.contextmanager
def observe_steps(backend: GenerationBackend, seen: Callable[[Sequence[int]], None]) -> Iterator[None]:
    """While active, `seen` gets each step's newest token ids of every run on `backend`
    (instrumentation for tests and benchmarks: greedy ids, per-token timestamps)."""
    if isinstance(backend, ResumableBackend):
        original_steps = backend.steps

        def steps(inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling) -> Steps:
            with contextlib.closing(original_steps(inputs, max_new_tokens=max_new_tokens, sampling=sampling)) as run:
                try:
                    newest = next(run)
                    while True:
                        seen(newest)
                        newest = run.send((yield newest))
                except StopIteration:
                    return

        name, replacement = "steps", steps
    else:
        original = backend.generate

        def generate(inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling, step: StepFn) -> None:
            def record(newest: Sequence[int]) -> Sequence[bool]:
                seen(newest)
                return step(newest)

            original(inputs, max_new_tokens=max_new_tokens, sampling=sampling, step=record)

        name, replacement = "generate", generate
    setattr(backend, name, replacement)
    try:
        yield
    finally:
        delattr(backend, name)


def drive(steps: Steps, step: StepFn) -> None:
    """Run a `Steps` generator to its end, answering each step with `step` (what `generate` does)."""
    try:
        newest = next(steps)
        while True:
            newest = steps.send(step(newest))
    except StopIteration:
        pass
    finally:
        steps.close()


BackendFactory = Callable[["LoadedModel"], GenerationBackend]
BACKENDS: dict[str, BackendFactory] = {}
BUILTIN_BACKENDS = {
    "transformers": "bimedix2.engine.transformers_backend",
    "llama-cpp": "bimedix2.engine.llama_cpp_backend",
}
"""Built-in backends by module, imported when first asked for: the llama.cpp engine never imports torch."""
_F = TypeVar("_F", bound=Callable[..., Any])


def register_backend(name: str) -> Callable[[_F], _F]:
    """Decorator for a backend class (or factory) taking a `LoadedModel`: `Engine(loaded, backend=name)` uses it."""

    def register(factory: _F) -> _F:
        builtin = BUILTIN_BACKENDS.get(name)
        if BACKENDS.get(name, factory) is not factory or (builtin and factory.__module__ != builtin):
            raise ValueError(f"engine backend {name!r} is already registered")
        BACKENDS[name] = factory
        return factory

    return register


def get_backend(name: str) -> BackendFactory:
    """The factory registered as `name`; an unknown name is a ConfigError listing the available ones."""
    if name not in BACKENDS and name in BUILTIN_BACKENDS:
        importlib.import_module(BUILTIN_BACKENDS[name])
    try:
        return BACKENDS[name]
    except KeyError:
        available = ", ".join(sorted(set(BACKENDS) | set(BUILTIN_BACKENDS)))
        raise ConfigError(f"unknown engine backend {name!r}. Available: {available}") from None


def template_stop_ids(tokenizer: Any, template: ChatTemplate) -> tuple[int, ...]:
    """Token ids that end a reply: the template's stop tokens found in the vocabulary, else EOS."""
    vocab = tokenizer.get_vocab()
    ids = tuple(sorted({vocab[t] for t in template.stop_tokens if t in vocab}))
    if not ids and tokenizer.eos_token_id is not None:
        ids = (tokenizer.eos_token_id,)
    return ids
