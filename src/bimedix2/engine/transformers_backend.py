"""The transformers backend: `model.generate` (sampling, KV cache, batching) on a loaded checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from ..model.base import LoadedModel
from .backend import PreparedBatch, Sampling, StepFn, register_backend, template_stop_ids


@register_backend("transformers")
class TransformersBackend:
    """Generation with transformers on a `LoadedModel` (any format `load_model` reads)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.stop_token_ids = template_stop_ids(loaded.tokenizer, loaded.template)
        pad = loaded.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.stop_token_ids[0]
        text_config = loaded.model.config.get_text_config()
        self.context_length: int | None = getattr(text_config, "max_position_embeddings", None)

    def encode(self, prompts: Sequence[str], images: Sequence[Any]) -> dict[str, Any]:
        """Tokenize with left padding (per call: training shares the tokenizer and pads on the right).

        Image markers that `render_prompt` marked as literal text are encoded as plain text
        (transformers' `sanitize_control_tokens`): the processor expands only the template's own `<image>`.
        """
        common = dict(
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
            sanitize_control_tokens=True,
        )
        if self.loaded.processor is not None:
            inputs = self.loaded.processor(text=list(prompts), images=list(images) or None, **common)
        else:
            inputs = self.loaded.tokenizer(list(prompts), **common)
        device = self.loaded.device
        moved = {k: v.to(device) for k, v in dict(inputs).items()}
        if "pixel_values" in moved:
            moved["pixel_values"] = moved["pixel_values"].to(self.loaded.model.dtype)
        return moved

    def merge(self, rows: Sequence[PreparedBatch]) -> PreparedBatch:
        """Left-pad single-row batches into one (see `merge_prepared`)."""
        return merge_prepared(rows, self.pad_token_id)

    def generate(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling, step: StepFn) -> None:
        """One `model.generate` call; `step` decides after every token which rows are done."""
        config = self.generation_config(sampling, max_new_tokens)
        criteria = StoppingCriteriaList([_Step(step)])
        device = self.loaded.device
        with (
            torch.inference_mode(),
            torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []),
        ):
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            self.loaded.model.generate(**inputs, generation_config=config, stopping_criteria=criteria)

    def generation_config(self, sampling: Sampling, max_new_tokens: int) -> GenerationConfig:
        """The transformers decoding settings for one run."""
        kwargs: dict[str, object] = dict(
            max_new_tokens=max_new_tokens,
            do_sample=sampling.do_sample,
            eos_token_id=list(self.stop_token_ids),
            pad_token_id=self.pad_token_id,
        )
        if sampling.do_sample:
            # top_k left unset, as the released code's generate() call left it: the checkpoint's
            # generation_config value, else transformers' default of 50.
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        if self.loaded.image_token_id is not None:
            kwargs["suppress_tokens"] = [self.loaded.image_token_id]  # a placeholder is never an answer
        return GenerationConfig(**kwargs)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of token ids, special tokens skipped, spaces as generated."""
        return self.loaded.tokenizer.decode(
            list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )


class _Step(StoppingCriteria):
    """Hands each row's newest token to the engine's per-row step function after every generation step."""

    def __init__(self, step: StepFn) -> None:
        self.step = step

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        done = self.step(input_ids[:, -1].tolist())
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


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
