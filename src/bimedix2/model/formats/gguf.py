"""``gguf``: a GGUF file of a causal LM, de-quantised by transformers on load."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ModelLoadError
from ...fileio import atomic_directory
from ..base import LoadedModel, LoadOptions

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

GGUF_MAGIC = b"GGUF"


class GgufFormat:
    """A single GGUF file (llama.cpp's format), recognised by its magic bytes."""

    name = "gguf"
    summary = "GGUF file of a causal LM"
    quantizations = ("none",)
    converts_to = "causal-lm"

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        with path.open("rb") as handle:
            return handle.read(len(GGUF_MAGIC)) == GGUF_MAGIC

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        from .common import causal_lm_model, place, resolve_device, resolve_dtype

        device = resolve_device(options.device)
        model, tokenizer = read_gguf(path, resolve_dtype(options.dtype, device))
        return causal_lm_model(place(model, device, options), tokenizer, path, self.name, options)

    def convert(self, src: Path, dst: Path, options: LoadOptions) -> Path:
        """Write the de-quantised model and its tokenizer as a safetensors causal-LM directory.

        `options.dtype` "auto" keeps float32. Refuses to overwrite an existing `dst`.
        """
        import torch

        from .common import resolve_dtype

        if dst.exists():
            raise ModelLoadError(f"{dst} already exists; choose a new output directory")
        model, tokenizer = read_gguf(src, resolve_dtype(options.dtype, torch.device("cpu")))
        with atomic_directory(dst) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return dst


def read_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (de-quantised, on the CPU) and tokenizer a GGUF file describes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    # de-quantised already: clear the marker that blocks save_pretrained
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model, tokenizer
