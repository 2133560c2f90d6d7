"""``llava-llama``: original LLaVA checkpoints (MBZUAI/BiMediX2-8B, -8B-Bi, -70B).

The weight mapping lives in `bimedix2.model.llava_llama`; this module plugs it into the registry.
"""

from __future__ import annotations

from pathlib import Path

from ..base import LoadedModel, LoadOptions, config_model_type


class LlavaLlamaFormat:
    """LLaVA's own `LlavaLlamaForCausalLM` layout (config.json model_type 'llava_llama')."""

    name = "llava-llama"
    summary = "original LLaVA (llava_llama) checkpoint"
    quantizations = ("none",)
    converts_to = "hf-llava"

    def detect(self, path: Path) -> bool:
        return config_model_type(path) == "llava_llama"

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        from ...conversation import BUILTIN_TEMPLATES
        from ..llava_llama import load_llava_llama
        from .common import llava_model, place, resolve_device, resolve_dtype

        device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, device)
        model, processor = load_llava_llama(path, vision_tower=options.vision_tower, dtype=dtype)
        # the tokenizer carries the base LLM's template; the released one is the format's default
        return llava_model(
            place(model, device, options),
            processor,
            path,
            self.name,
            options,
            template_holder=processor.tokenizer,
            default_template=BUILTIN_TEMPLATES["bimedix2-llama3"],
        )

    def convert(self, src: Path, dst: Path, options: LoadOptions) -> Path:
        """Write `src` as a transformers Llava checkpoint; dtype "auto" keeps the checkpoint's own."""
        import torch

        from ..llava_llama import convert_llava_llama
        from .common import resolve_dtype

        dtype = None if options.dtype == "auto" else resolve_dtype(options.dtype, torch.device("cpu"))
        return convert_llava_llama(src, dst, vision_tower=options.vision_tower, dtype=dtype)
