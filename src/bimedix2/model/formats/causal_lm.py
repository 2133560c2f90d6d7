"""``causal-lm``: plain causal LMs for text chat (BiMediX v1 Mixtral, Llama-3.1, SmolLM2)."""

from __future__ import annotations

from pathlib import Path

from ..base import LoadedModel, LoadOptions, config_model_type, read_config


class CausalLmFormat:
    """Any checkpoint `AutoModelForCausalLM` loads: a causal-LM model_type, or remote code mapping one."""

    name = "causal-lm"
    summary = "transformers causal LM checkpoint"
    quantizations = ("none", "4bit")

    def detect(self, path: Path) -> bool:
        model_type = config_model_type(path)
        if model_type is None:
            return False
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return True
        auto_map = read_config(path).get("auto_map")
        return isinstance(auto_map, dict) and "AutoModelForCausalLM" in auto_map

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .common import causal_lm_model, place, placement_kwargs, resolve_device, resolve_dtype

        device = resolve_device(options.device)
        kwargs = placement_kwargs(options, device, resolve_dtype(options.dtype, device))
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = place(AutoModelForCausalLM.from_pretrained(path, **kwargs), device, options)
        return causal_lm_model(model, tokenizer, path, self.name, options)
