"""Steps every format shares: device and dtype, 4-bit quantization, chat template, `LoadedModel`."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlavaForConditionalGeneration, PreTrainedModel, PreTrainedTokenizerBase

from ...conversation import BIMEDIX2_LLAMA3, BUILTIN_TEMPLATES, ChatTemplate
from ...errors import ModelLoadError
from ...types import ModelInfo
from ..base import QUANTIZATIONS, LoadedModel, LoadOptions

# Kept in full precision under 4-bit loading: CLIP, the projector and the output head.
UNQUANTIZED_MODULES = ["vision_tower", "multi_modal_projector", "lm_head"]


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
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return value


def check_quantization(quantization: str, device: torch.device) -> None:
    """Refuse a quantization this machine cannot run, before any weights are read."""
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantization {quantization!r}. Available: {', '.join(QUANTIZATIONS)}")
    if quantization == "none":
        return
    if device.type != "cuda":
        raise ModelLoadError(
            f"{quantization} quantization (QLoRA) needs a CUDA GPU with bitsandbytes; the model would load on "
            f"{device}. Load with quantization 'none' to run on the CPU."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelLoadError(f"{quantization} quantization needs bitsandbytes: pip install bitsandbytes") from None


def placement_kwargs(options: LoadOptions, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """`from_pretrained` keyword arguments: the dtype, and for 4-bit the bitsandbytes config and device map."""
    if options.quantization == "none":
        return {"dtype": dtype}
    from transformers import BitsAndBytesConfig

    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=UNQUANTIZED_MODULES,
    )
    return {"dtype": dtype, "quantization_config": bnb, "device_map": {"": device}}


def place(model: PreTrainedModel, device: torch.device, options: LoadOptions) -> PreTrainedModel:
    """Move the model to `device` (a 4-bit model is placed at load time) in eval mode."""
    if options.quantization == "none":
        model = model.to(device)
    return model.eval()


def pick_template(choice: str, holder: Any, format_default: ChatTemplate | None, name: str) -> ChatTemplate:
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


def model_info(
    name: str, source_format: str, model: PreTrainedModel, template: ChatTemplate, image_tokens: int | None = None
) -> ModelInfo:
    """What `bimedix2 info` reports about a loaded model."""
    vision = getattr(model.config, "vision_config", None)
    return ModelInfo(
        name=name,
        source_format=source_format,
        family="llava" if image_tokens is not None else "causal-lm",
        chat_template=template.name,
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        parameters=sum(p.numel() for p in model.parameters()),
        image_size=vision.image_size if image_tokens is not None and vision is not None else None,
        image_tokens=image_tokens,
    )


def causal_lm_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Any, source_format: str, options: LoadOptions
) -> LoadedModel:
    """A text-only `LoadedModel`: pad token set, the checkpoint's own template unless one is chosen."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    template = pick_template(options.chat_template, tokenizer, None, str(path))
    return LoadedModel(model, tokenizer, None, template, model_info(str(path), source_format, model, template))


def llava_model(
    model: LlavaForConditionalGeneration,
    processor: Any,
    path: Any,
    source_format: str,
    options: LoadOptions,
    *,
    template_holder: Any,
    default_template: ChatTemplate | None = None,
) -> LoadedModel:
    """A vision `LoadedModel`: processor aligned with the model, aspect ratio from the checkpoint."""
    align_processor(model, processor)
    template = pick_template(options.chat_template, template_holder, default_template, str(path))
    aspect = options.image_aspect_ratio or getattr(model.config, "image_aspect_ratio", "pad")
    tokens = tokens_per_image(model)
    info = model_info(str(path), source_format, model, template, tokens)
    image_token_id = model.config.image_token_index
    return LoadedModel(model, processor.tokenizer, processor, template, info, aspect, image_token_id, tokens)


def tokens_per_image(model: LlavaForConditionalGeneration) -> int:
    """Image features the model produces per image: patches, plus CLS under the 'full' strategy."""
    vision = model.config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    return patches + (1 if model.config.vision_feature_select_strategy == "full" else 0)


def align_processor(model: LlavaForConditionalGeneration, processor: Any) -> None:
    """Make the processor expand `<image>` to exactly as many tokens as the model has features.

    Older saved processors lack these fields (transformers then miscounts CLIP towers by one).
    """
    processor.patch_size = model.config.vision_config.patch_size
    processor.vision_feature_select_strategy = model.config.vision_feature_select_strategy
    has_cls = model.config.vision_config.model_type == "clip_vision_model"
    processor.num_additional_image_tokens = 1 if has_cls else 0


def prompt_facts(loaded: LoadedModel) -> dict[str, Any]:
    """How a loaded model is prompted, for `bimedix2 info`: BOS, stop tokens, image tokens, vocabulary."""
    tokenizer = loaded.tokenizer
    vocab = tokenizer.get_vocab()
    stops = [t for t in loaded.template.stop_tokens if t in vocab] or [tokenizer.eos_token]
    return {
        "bos": bos_handling(loaded.template, tokenizer),
        "stop_tokens": stops,
        "image_aspect_ratio": loaded.image_aspect_ratio if loaded.has_vision else None,
        "vocab_size": loaded.model.get_input_embeddings().weight.shape[0],
        "tokenizer_size": len(tokenizer),
    }


def bos_handling(template: ChatTemplate, tokenizer: PreTrainedTokenizerBase) -> str:
    """'template renders 2 BOS (released conv_llama3); tokenizer BOS not added' and the like.

    The engine, training and vLLM tokenize rendered prompts with add_special_tokens=False, so the
    BOS tokens a prompt starts with are exactly those its template renders.
    """
    bos = tokenizer.bos_token
    if not bos:
        return "the tokenizer has no BOS token"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], chat_template=template.jinja, tokenize=False, add_generation_prompt=True
    )
    released = " (released conv_llama3)" if template.name == BIMEDIX2_LLAMA3.name else ""
    return f"template renders {rendered.count(bos)} BOS{released}; tokenizer BOS not added"
