"""Helpers of the llama.cpp engine tests: the ids an engine prepares and generates."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from bimedix2.engine import Engine
from bimedix2.types import GenParams, Message

GREEDY = GenParams(max_new_tokens=32, temperature=0.0)


def greedy_ids(engine: Engine, messages: Sequence[Message], params: GenParams = GREEDY) -> list[int]:
    """The token ids `engine` generates for one conversation (recorded at every step)."""
    seen: list[int] = []
    if hasattr(engine.backend, "steps"):  # llama.cpp: the run is a generator of steps
        original_steps = engine.backend.steps

        def recording_steps(inputs: Any, *, max_new_tokens: int, sampling: Any) -> Generator[Sequence[int], Any, None]:
            steps = original_steps(inputs, max_new_tokens=max_new_tokens, sampling=sampling)
            try:
                newest = next(steps)
                while True:
                    seen.append(int(newest[0]))
                    newest = steps.send((yield newest))
            except StopIteration:
                return
            finally:
                steps.close()

        name, replacement = "steps", recording_steps
    else:
        original = engine.backend.generate

        def recording(inputs: Any, *, max_new_tokens: int, sampling: Any, step: Any) -> None:
            def record(newest: Sequence[int]) -> Sequence[bool]:
                seen.append(int(newest[0]))
                return step(newest)

            original(inputs, max_new_tokens=max_new_tokens, sampling=sampling, step=record)

        name, replacement = "generate", recording
    setattr(engine.backend, name, replacement)
    try:
        engine.generate(messages, params)
    finally:
        delattr(engine.backend, name)
    stops = set(engine.stop_token_ids)
    cut = next((i for i, t in enumerate(seen) if t in stops), None)
    return seen if cut is None else seen[: cut + 1]


def prompt_ids(engine: Engine, messages: Sequence[Message], image_token_id: int | None = None) -> list[int]:
    """The prompt ids `engine` prepares (image positions as `image_token_id` when given)."""
    ids = engine.prepare([messages], GREEDY).inputs["input_ids"][0].tolist()
    if image_token_id is not None:
        own = engine.loaded.image_token_id
        ids = [image_token_id if t == own else t for t in ids]
    return ids
