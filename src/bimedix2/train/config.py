"""The training config schema (one YAML file per recipe, see configs/train/).

Every field has the released BiMediX2 value or a safe default; `validate()` hooks reject
inconsistent combinations with the field's dotted name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from ..model.formats import format_names

Stage = Literal["stage1", "stage2"]

# Llama attention + MLP projections, restricted to the language model so CLIP's q/k/v get no adapters.
LANGUAGE_MODEL_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class ModelConfig:
    """Which checkpoint to start from (or which parts to compose) and how to load it.

    Either `path` (an existing checkpoint: a released BiMediX2, a stage-1 output, any LLaVA) or
    `language_model` (+ `vision_tower`): a Llama-family causal LM and a CLIP tower composed into
    a LLaVA model with a freshly initialised projector, as the released stage-1 script starts.
    """

    path: str | None = None  # checkpoint dir / hub id; None (and no language_model) = embedded SmolLM2 (text only)
    language_model: str | None = None  # compose from parts: a Llama-family causal LM (hub id or dir)
    format: str = "auto"  # auto (from the checkpoint's files) or a registered checkpoint format
    chat_template: str = "auto"  # auto, model, bimedix2-llama3
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on a GPU that has it
    # The CLIP tower: composed with language_model (default openai/clip-vit-large-patch14-336), or
    # for a llava-llama checkpoint an override of its mm_vision_tower.
    vision_tower: str | None = None
    projector_weights: str | None = None  # stage-1 output (projector.safetensors) to start stage 2 from
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"; None: transformers' default

    def validate(self) -> None:
        if self.format != "auto" and self.format not in format_names():
            raise ConfigError(
                f"model.format: unknown checkpoint format {self.format!r}. Available: auto, {', '.join(format_names())}"
            )
        if self.language_model is not None:
            if self.path is not None:
                raise ConfigError(
                    "model.language_model: give either model.path (an existing checkpoint) or "
                    "model.language_model (+ model.vision_tower) to compose one, not both"
                )
            if self.format != "auto":
                raise ConfigError("model.format: a composed model (model.language_model) has no checkpoint format")


@dataclass(frozen=True)
class DataConfig:
    """Where the LLaVA-format records are and how they become token sequences."""

    train: tuple[str, ...] = ()  # JSON (list) or JSONL files of LLaVA / BiMed-V records
    image_root: str | None = None  # relative `image` paths are resolved against this (default: the file's dir)
    max_length: int = 2048
    overlong: Literal["drop", "truncate"] = "drop"  # truncate: keep whole turns that fit, at turn boundaries
    steer_language: bool = False  # append the inference-time "Answer in ..." hint to every user turn
    # model: the checkpoint's image_aspect_ratio (pad for BiMediX2); pad: pad to a square with the CLIP
    # mean colour first; square: LLaVA's default, CLIP's resize + centre crop only.
    image_aspect_ratio: Literal["model", "pad", "square"] = "model"
    limit: int | None = None  # use only the first N records (smoke runs)
    packing: bool = False  # several samples per row, attention kept separate (position_ids restart)
    group_by_length: bool = True  # batches of similar length (ignored when packing)
    # LLaVA's --group_by_modality_length: image and text-only samples in separate mega-batches, each
    # length-grouped (takes precedence over group_by_length).
    group_by_modality_length: bool = False

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("data.train: name at least one JSON/JSONL file of training records")
        if self.max_length < 16:
            raise ConfigError(f"data.max_length: {self.max_length} is too small (minimum 16)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("data.limit: must be at least 1 (or null for all records)")
        if self.packing and self.group_by_modality_length:
            raise ConfigError(
                "data.group_by_modality_length: packed rows mix image and text-only samples; "
                "use packing or modality grouping, not both"
            )


@dataclass(frozen=True)
class LoraConfig:
    """LoRA on the language model (stage 2). BiMediX2 released: r=8, alpha=16."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str = LANGUAGE_MODEL_LINEAR  # a regex (peft full-match) over module names
    # nn.Parameters that get LoRA too (peft target_parameters, suffix match), for weights that are no
    # nn.Linear: transformers' fused MoE experts ("mlp.experts.gate_up_proj") and routers ("mlp.gate.weight").
    target_parameters: tuple[str, ...] = ()
    quantization: Literal["none", "4bit"] = "none"  # 4bit = QLoRA (bitsandbytes, CUDA only)

    def validate(self) -> None:
        if self.r < 1:
            raise ConfigError("lora.r: must be at least 1")
        if self.alpha < 1:
            raise ConfigError("lora.alpha: must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError("lora.dropout: must be in [0, 1)")
        if self.target_parameters and self.dropout:
            raise ConfigError("lora.dropout: must be 0 with lora.target_parameters (peft cannot drop out inside them)")
        if any("vision" in name for name in self.target_parameters):
            raise ConfigError("lora.target_parameters: the vision tower gets no adapters")
        if "language_model" not in self.target_modules and "model.layers" not in self.target_modules:
            raise ConfigError(
                "lora.target_modules: the regex must be restricted to the language model "
                "(contain 'language_model' or 'model.layers') so the vision tower gets no adapters"
            )


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation and the run's bookkeeping (output, checkpoints, logging)."""

    output_dir: str = "runs/train"
    lr: float = 2e-4
    projector_lr: float | None = 2e-5  # stage 2: the projector's own lr (None: same as lr)
    weight_decay: float = 0.0
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = 0.03
    warmup_steps: int = 0  # > 0 overrides warmup_ratio
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where supported, else fp32
    tf32: bool = False  # TF32 matmuls on Ampere+ GPUs (the released --tf32 True); ignored on the CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 3
    report_to: tuple[str, ...] = ()  # e.g. [tensorboard] or [wandb]; metrics.jsonl is always written
    dataloader_num_workers: int = 0
    save_full_model: bool = True  # stage 1: also write final/model/, a full checkpoint stage 2 and `ask` load

    def validate(self) -> None:
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be at least 1")
        if self.lr <= 0:
            raise ConfigError("train.lr: must be > 0")
        if self.projector_lr is not None and self.projector_lr <= 0:
            raise ConfigError("train.projector_lr: must be > 0 (or null to use train.lr)")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("train.warmup_ratio: must be in [0, 1)")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("train.epochs: must be > 0 when train.max_steps is not set")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training recipe."""

    stage: Stage
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self) -> None:
        if self.stage == "stage1" and self.lora.quantization != "none":
            raise ConfigError("lora.quantization: QLoRA applies to stage 2 only")
        if self.model.language_model is not None and self.lora.quantization != "none":
            raise ConfigError(
                "lora.quantization: a composed model loads unquantised; write it once with `bimedix2 compose` "
                "and point model.path at that checkpoint to train it with QLoRA"
            )
