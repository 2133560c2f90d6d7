"""Helpers of the llama.cpp engine tests: the ids an engine prepares and generates."""

from __future__ import annotations

from collections.abc import Sequence

from bimedix2.engine import Engine, observe_steps
from bimedix2.types import GenParams, Message

GREEDY = GenParams(max_new_tokens=32, temperature=0.0)


def greedy_ids(engine: Engine, messages: Sequence[Message], params: GenParams = GREEDY) -> list[int]:
    """The token ids `engine` generates for one conversation (recorded at every step)."""
    seen: list[int] = []
    with observe_steps(engine.backend, lambda newest: seen.append(int(newest[0]))):
        engine.generate(messages, params)
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
