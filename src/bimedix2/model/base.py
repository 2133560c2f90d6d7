"""What loading takes and gives: `LoadOptions` in, `LoadedModel` out (no torch import here)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ModelLoadError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ..conversation import ChatTemplate
    from ..types import ModelInfo

Quantization = Literal["none", "4bit"]
QUANTIZATIONS: tuple[str, ...] = ("none", "4bit")


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. "auto" fields are resolved from the checkpoint's config."""

    format: str = "auto"  # "auto" (detected from the checkpoint's files) or a registered format name
    chat_template: str = "auto"  # "auto", "model" (the tokenizer's own), or a built-in name
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"  # "auto", "float32", "bfloat16", "float16"
    vision_tower: str | None = None  # llava-llama: override mm_vision_tower
    image_aspect_ratio: str | None = None  # "pad" or "none"; default from the checkpoint, else "pad"
    quantization: Quantization = "none"  # "4bit": NF4 weights via bitsandbytes (QLoRA), CUDA only
    trust_remote_code: bool = False  # allow a checkpoint's own Python code (phi3-v); never implied


@dataclass(frozen=True)
class LoadedModel:
    """A ready-to-run model with everything needed to prompt it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    processor: Any | None  # a LlavaProcessor for vision models
    template: ChatTemplate
    info: ModelInfo
    image_aspect_ratio: str = "pad"
    image_token_id: int | None = None
    tokens_per_image: int | None = None

    @property
    def has_vision(self) -> bool:
        """Whether the model can take images."""
        return self.processor is not None

    @property
    def device(self) -> torch.device:
        """Where the model's inputs must go."""
        return self.model.device


def read_config(checkpoint: Path) -> dict[str, Any]:
    """The raw `config.json` of a checkpoint directory."""
    path = checkpoint / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{checkpoint}: no config.json; is this a model checkpoint directory?")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return raw


def cache_dir() -> Path:
    """The toolkit's cache: $BIMEDIX2_CACHE_DIR, else $XDG_CACHE_HOME/bimedix2, else ~/.cache/bimedix2."""
    if env := os.environ.get("BIMEDIX2_CACHE_DIR"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "bimedix2"


def config_model_type(path: Path) -> str | None:
    """config.json's model_type of a checkpoint directory; None when there is none to read."""
    if not path.is_dir():
        return None
    try:
        value = read_config(path).get("model_type")
    except ModelLoadError:
        return None
    return value if isinstance(value, str) else None
