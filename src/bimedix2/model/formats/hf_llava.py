"""``hf-llava``: transformers Llava checkpoints (the MBZUAI/BiMediX2-8B-hf layout)."""

from __future__ import annotations

from pathlib import Path

from ..base import LoadedModel, LoadOptions, config_model_type


class HfLlavaFormat:
    """A `LlavaForConditionalGeneration` checkpoint with its processor (config.json model_type 'llava')."""

    name = "hf-llava"
    summary = "transformers Llava checkpoint"
    quantizations = ("none", "4bit")

    def detect(self, path: Path) -> bool:
        return config_model_type(path) == "llava"

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        from .common import llava_model, place, placement_kwargs, resolve_device, resolve_dtype

        device = resolve_device(options.device)
        kwargs = placement_kwargs(options, device, resolve_dtype(options.dtype, device))
        model = place(LlavaForConditionalGeneration.from_pretrained(path, **kwargs), device, options)
        processor = AutoProcessor.from_pretrained(path)
        return llava_model(model, processor, path, self.name, options, template_holder=processor)
