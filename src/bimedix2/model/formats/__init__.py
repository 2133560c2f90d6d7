"""Checkpoint formats: one module per format, one registry, an explicit detection order.

A format is an object with `name`, `summary`, `quantizations`, `detect(path)` and
`load(path, options)`, optionally `converts_to` and `convert(src, dst, options)` (see
`registry.CheckpointFormat`). Adding one: write its module, then one `register_format(...)`
line (here for a built-in, anywhere for a plugin). Importing this package stays light: format
modules import torch and transformers only inside `load` / `convert`.
"""

from __future__ import annotations

from .causal_lm import CausalLmFormat
from .gguf import GgufFormat
from .hf_llava import HfLlavaFormat
from .llava_llama import LlavaLlamaFormat
from .phi3_v import Phi3VFormat
from .registry import (
    CheckpointFormat,
    ConvertibleFormat,
    convertible_formats,
    detect_format,
    format_names,
    get_format,
    register_format,
    unregister_format,
)

# Detection order: a GGUF file by its magic bytes, then the LLaVA layouts and Phi-3-vision by
# model_type (phi3_v before causal-lm, whose auto_map check would claim it), then any causal LM
# transformers knows (the most general, so last).
register_format(GgufFormat())
register_format(LlavaLlamaFormat())
register_format(HfLlavaFormat())
register_format(Phi3VFormat())
register_format(CausalLmFormat())

__all__ = [
    "CheckpointFormat",
    "ConvertibleFormat",
    "convertible_formats",
    "detect_format",
    "format_names",
    "get_format",
    "register_format",
    "unregister_format",
]
