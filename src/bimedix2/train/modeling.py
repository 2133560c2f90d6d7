"""Loading a model for training, freezing, LoRA/QLoRA, and the projector's own weight file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import TrainingError
from ..model.compose import DEFAULT_VISION_TOWER, ComposeSpec, compose_llava, gathered
from ..model.loader import LoadedModel, LoadOptions, load_model
from .config import LoraConfig, TrainConfig

log = logging.getLogger(__name__)

PROJECTOR_FILE = "projector.safetensors"
PROJECTOR_NAME = "multi_modal_projector"


def resolve_device(choice: str) -> str:
    """'cuda' when asked for or available (auto), else 'cpu'; asking for CUDA without one raises."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA GPU is available on this machine")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def resolve_precision(choice: str, device: str) -> str:
    """'bf16' on a GPU that supports it (auto), else 'fp32'; fp16 needs a GPU."""
    if choice == "auto":
        return "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if choice == "fp16" and device != "cuda":
        raise TrainingError("train.precision fp16 needs a CUDA GPU; use fp32 or bf16 on CPU")
    if choice == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainingError("train.precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
    return choice


def load_for_training(cfg: TrainConfig, device: str, precision: str) -> LoadedModel:
    """Load the configured checkpoint, or compose one from its parts, in the training dtype.

    Unquantised, it loads on the CPU (the Trainer places it); frozen weights are stored in
    bf16/fp16 under mixed precision and trainable ones cast to fp32 later
    (`cast_trainable_to_fp32`). QLoRA (stage 2, lora.quantization=4bit) loads 4-bit NF4
    weights straight onto this process's GPU.
    """
    dtype = cfg.model.dtype
    if dtype == "auto":
        dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")
    if cfg.model.language_model is not None:
        loaded = compose_llava(
            compose_spec(cfg), LoadOptions(chat_template=cfg.model.chat_template, device="cpu", dtype=dtype)
        )
        return _finish_loading(loaded, cfg)
    quantization = "4bit" if cfg.lora.quantization == "4bit" and cfg.stage == "stage2" else "none"
    if quantization == "4bit" and device != "cuda":
        raise TrainingError(
            "lora.quantization=4bit (QLoRA) needs a CUDA GPU with bitsandbytes; this machine has none. "
            "Use lora.quantization=none to train LoRA on the CPU."
        )
    options = LoadOptions(
        format=cfg.model.format,
        chat_template=cfg.model.chat_template,
        device=_load_device(device) if quantization == "4bit" else "cpu",
        dtype=dtype,
        vision_tower=cfg.model.vision_tower,
        quantization=quantization,
    )
    return _finish_loading(load_model(cfg.model.path, options), cfg)


def compose_spec(cfg: TrainConfig) -> ComposeSpec:
    """What `model.language_model` / `model.vision_tower` compose (the projector seeded by train.seed)."""
    if cfg.model.language_model is None:
        raise TrainingError("model.language_model is not set; nothing to compose")
    return ComposeSpec(
        language_model=cfg.model.language_model,
        vision_tower=cfg.model.vision_tower or DEFAULT_VISION_TOWER,
        seed=cfg.train.seed,
    )


def _finish_loading(loaded: LoadedModel, cfg: TrainConfig) -> LoadedModel:
    """Attention kernel, stage-1 projector weights, no KV cache while training."""
    if cfg.model.attn_implementation:
        loaded.model.set_attn_implementation(cfg.model.attn_implementation)
    if cfg.model.projector_weights:
        load_projector(loaded.model, Path(cfg.model.projector_weights))
    loaded.model.config.use_cache = False
    return loaded


def _load_device(device: str) -> str:
    """This process's own GPU under torch.distributed (one per local rank), else `device`."""
    if device == "cuda" and torch.distributed.is_initialized():
        return f"cuda:{torch.distributed.get_rank() % torch.cuda.device_count()}"
    return device


def find_projector(model: torch.nn.Module) -> torch.nn.Module | None:
    """The LLaVA projector module (also inside a PEFT wrapper), or None for a text-only model."""
    found = [m for name, m in model.named_modules() if name.split(".")[-1] == PROJECTOR_NAME]
    if len(found) > 1:
        raise TrainingError(f"found {len(found)} modules named {PROJECTOR_NAME}; expected one")
    return found[0] if found else None


def freeze_for_stage1(model: torch.nn.Module) -> list[str]:
    """Freeze everything but the projector; return the trainable parameter names."""
    projector = find_projector(model)
    if projector is None:
        raise TrainingError("stage 1 trains the vision projector, but this model has none (text only)")
    for param in model.parameters():
        param.requires_grad_(False)
    for param in projector.parameters():
        param.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def attach_lora(model: torch.nn.Module, lora: LoraConfig, *, train_projector: bool, quantized: bool = False) -> Any:
    """Wrap with LoRA on the language model's linears (regex), projector trainable; returns the PeftModel."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    target = lora.target_modules
    if find_projector(model) is None and target.startswith(r".*language_model"):
        target = target.replace(r".*language_model", r".*model\.layers", 1)  # a plain causal LM has no language_model
    config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target,
        target_parameters=list(lora.target_parameters) or None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise TrainingError(f"lora.target_modules {target!r} matches no module of this model ({exc})") from None
    if train_projector:
        projector = find_projector(peft_model)
        if projector is not None:
            for param in projector.parameters():
                param.requires_grad_(True)
    vision_adapters = [n for n, _ in peft_model.named_parameters() if "lora_" in n and "vision_tower" in n]
    if vision_adapters:
        raise TrainingError(f"LoRA adapters landed on the vision tower ({vision_adapters[0]}); fix lora.target_modules")
    return peft_model


def cast_trainable_to_fp32(model: torch.nn.Module) -> None:
    """Keep trainable parameters in fp32 (master weights) while frozen ones stay bf16/fp16."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def projector_state(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The projector's weights keyed relative to the projector (``linear_1.weight`` ...)."""
    if state_dict is not None:
        out = {}
        for key, value in state_dict.items():
            head, sep, rest = key.partition(f"{PROJECTOR_NAME}.")
            if sep and (not head or head.endswith(".")):
                out[rest] = value
        if out:
            return {k: v.detach().cpu().contiguous() for k, v in out.items()}
    projector = find_projector(model)
    if projector is None:
        return {}
    return {k: v.detach().cpu().contiguous() for k, v in projector.state_dict().items()}


def save_projector(
    model: torch.nn.Module, directory: Path, state_dict: dict[str, torch.Tensor] | None = None
) -> Path | None:
    """Write `projector.safetensors` into `directory` (None for a text-only model)."""
    state = projector_state(model, state_dict)
    if not state:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PROJECTOR_FILE
    save_file(state, str(path), metadata={"format": "pt", "module": PROJECTOR_NAME})
    return path


def load_projector(model: torch.nn.Module, path: Path) -> None:
    """Load projector weights saved by `save_projector` (a file or a directory holding one)."""
    if path.is_dir():
        path = path / PROJECTOR_FILE
    if not path.is_file():
        raise TrainingError(f"{path}: projector weights not found")
    projector = find_projector(model)
    if projector is None:
        raise TrainingError(f"{path}: projector weights given but the model has no projector (text only)")
    state = load_file(str(path))
    params = list(projector.parameters())
    with gathered(params):  # whole under ZeRO-3, which partitioned them at load
        try:
            projector.load_state_dict({k: v.to(params[0].dtype) for k, v in state.items()}, strict=True)
        except RuntimeError as exc:
            raise TrainingError(f"{path}: projector weights do not fit this model ({exc})") from None


def trainable_summary(model: torch.nn.Module) -> str:
    """'N trainable of M parameters (x%)'."""

    def count(p: torch.nn.Parameter) -> int:
        return int(getattr(p, "ds_numel", p.numel()))  # ZeRO-3 partitioned parameters keep their size in ds_numel

    total = sum(count(p) for p in model.parameters())
    trainable = sum(count(p) for p in model.parameters() if p.requires_grad)
    return f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / max(total, 1):.3f}%)"


__all__ = [
    "PROJECTOR_FILE",
    "attach_lora",
    "cast_trainable_to_fp32",
    "find_projector",
    "freeze_for_stage1",
    "load_for_training",
    "load_projector",
    "projector_state",
    "resolve_device",
    "resolve_precision",
    "save_projector",
    "trainable_summary",
]
