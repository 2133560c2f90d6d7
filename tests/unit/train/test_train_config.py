"""The generic config loader, and every shipped training / accelerate config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from bimedix2.config import apply_overrides, config_to_dict, from_dict, load_config, save_config
from bimedix2.errors import ConfigError
from bimedix2.train.config import LANGUAGE_MODEL_LINEAR, TrainConfig

REPO = Path(__file__).parents[3]


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    names: tuple[str, ...] = ()
    mode: Literal["a", "b"] = "a"

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError("inner.lr: must be > 0")


@dataclass(frozen=True)
class Outer:
    name: str
    steps: int = 1
    path: Path | None = None
    inner: Inner = field(default_factory=Inner)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_with_dotted_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ninner:\n  lr: 0.5\n")
    cfg = load_config(path, Outer, ["inner.lr=1e-4", "steps=7", "inner.names=[a, b]", "path=/tmp/q", "inner.mode=b"])
    assert cfg == Outer("x", 7, Path("/tmp/q"), Inner(1e-4, ("a", "b"), "b"))


def test_yaml_1_1_exponent_without_dot_is_a_float(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "name: x\ninner: {lr: 2e-4}\n"), Outer).inner.lr == 2e-4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["inner.lrr=1"], "inner.lrr: unknown field"),
        (["steps=many"], "steps: expected an integer"),
        (["inner.lr=fast"], "inner.lr: expected a number"),
        (["inner.mode=c"], "inner.mode: must be one of"),
        (["inner.lr=-1"], "inner.lr: must be > 0"),
        (["inner.names=oops"], "inner.names: expected a list"),
        (["steps"], "expected FIELD.PATH=VALUE"),
        (["name.sub=1"], "name is not a section"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "name: x\n"), Outer, overrides)


def test_missing_required_field_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name: required field is missing"):
        load_config(write(tmp_path, "steps: 2\n"), Outer)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", Outer)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), Outer)


def test_saved_config_round_trips(tmp_path: Path) -> None:
    cfg = Outer("ar-عربي", 3, Path("/x"), Inner(0.1, ("q",), "b"))
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(path, Outer) == cfg
    assert "عربي" in path.read_text(encoding="utf-8")


def test_overrides_do_not_mutate_input() -> None:
    data = {"inner": {"lr": 1}}
    apply_overrides(data, ["inner.lr=2"])
    assert data == {"inner": {"lr": 1}}
    assert from_dict(Outer, {"name": "n"}).inner == Inner()
    assert config_to_dict(Outer("n"))["inner"]["names"] == []


TRAIN_CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))


def test_shipped_train_configs_exist() -> None:
    names = {p.name for p in TRAIN_CONFIGS}
    assert {
        "stage1-tiny.yaml",
        "stage2-tiny.yaml",
        "stage1-8b.yaml",
        "stage2-8b.yaml",
        "stage2-70b.yaml",
        "bimedix-v1-qlora.yaml",
    } <= names


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_train_config_loads_and_validates(path: Path) -> None:
    cfg = load_config(path, TrainConfig)
    assert cfg.stage in ("stage1", "stage2")
    assert cfg.data.train and cfg.data.max_length >= 16
    assert (cfg.model.path is None) != (cfg.model.language_model is None)  # a checkpoint, or parts to compose


# The released scripts (github.com/mbzuai-oryx/BiMediX2 scripts/stage1_train.sh, stage2_train.sh), flag by
# flag, as the fields that reproduce them. --max_steps 1 of stage2_train.sh is the one deliberate deviation.
RELEASED_COMMON = {
    "model.vision_tower": "openai/clip-vit-large-patch14-336",  # --vision_tower
    "train.epochs": 1,  # --num_train_epochs 1
    "train.per_device_batch_size": 8,  # --per_device_train_batch_size 8
    "train.gradient_accumulation_steps": 1,  # --gradient_accumulation_steps 1
    "train.save_total_limit": 1,  # --save_total_limit 1
    "train.weight_decay": 0.0,  # --weight_decay 0.
    "train.warmup_ratio": 0.03,  # --warmup_ratio 0.03
    "train.scheduler": "cosine",  # --lr_scheduler_type cosine
    "train.logging_steps": 1,  # --logging_steps 1
    "train.tf32": True,  # --tf32 True
    "train.precision": "bf16",  # --bf16 True
    "train.gradient_checkpointing": True,  # --gradient_checkpointing True
    "train.dataloader_num_workers": 4,  # --dataloader_num_workers 4
    "train.report_to": (),  # --report_to none
    "train.seed": 42,  # transformers' default
}
RELEASED = {
    "stage1-8b.yaml": {
        **RELEASED_COMMON,
        "stage": "stage1",  # --tune_mm_mlp_adapter True, --version plain
        "model.language_model": "meta-llama/Meta-Llama-3.1-8B-Instruct",  # --model_name_or_path
        "data.max_length": 2048,  # --model_max_length 2048
        "data.image_aspect_ratio": "square",  # no --image_aspect_ratio: LLaVA's default
        "data.group_by_modality_length": False,
        "train.lr": 1e-3,  # --learning_rate 1e-3
        "train.save_steps": 24000,  # --save_steps 24000
    },
    "stage2-8b.yaml": {
        **RELEASED_COMMON,
        "stage": "stage2",
        "model.language_model": "meta-llama/Meta-Llama-3.1-8B-Instruct",  # --model_name_or_path
        "model.projector_weights": "runs/bimedix2-8b-stage1/final/projector.safetensors",  # --pretrain_mm_mlp_adapter
        "model.chat_template": "bimedix2-llama3",  # --version llama3
        "data.max_length": 4096,  # --model_max_length 4096
        "data.image_aspect_ratio": "pad",  # --image_aspect_ratio pad
        "data.group_by_modality_length": True,  # --group_by_modality_length True
        "train.lr": 2e-4,  # --learning_rate 2e-4
        "train.projector_lr": 2e-5,  # --mm_projector_lr 2e-5
        "train.save_steps": 50000,  # --save_steps 50000
        "train.max_steps": -1,  # deviation: the script's --max_steps 1 is a smoke-test leftover
        "lora.r": 8,  # --lora_r 8
        "lora.alpha": 16,  # --lora_alpha 16
        "lora.dropout": 0.05,  # LLaVA's default lora_dropout
        "lora.quantization": "none",  # --bits 16
    },
}
RELEASED["stage2-70b.yaml"] = {
    **{k: v for k, v in RELEASED["stage2-8b.yaml"].items() if k not in ("model.language_model", "model.vision_tower")},
    "model.path": "runs/bimedix2-70b-composed",  # Llama-3.1-70B-Instruct + CLIP, composed once (bimedix2 compose)
    "model.projector_weights": "runs/bimedix2-70b-stage1/final/projector.safetensors",
}


def field(cfg: TrainConfig, dotted: str) -> object:
    value: object = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_configs_reproduce_the_released_scripts(name: str) -> None:
    cfg = load_config(REPO / "configs" / "train" / name, TrainConfig)
    got = {key: field(cfg, key) for key in RELEASED[name]}
    assert got == RELEASED[name]
    if cfg.stage == "stage2":  # LLaVA's find_all_linear_names: every linear of the LLM, not CLIP, not lm_head
        assert cfg.lora.target_modules == LANGUAGE_MODEL_LINEAR
    text = (REPO / "configs" / "train" / name).read_text(encoding="utf-8")
    assert "--" in text and "stage" in text  # fields cite the flags they reproduce


def test_every_config_comment_names_its_launch() -> None:
    for name in ("stage1-8b.yaml", "stage2-8b.yaml", "stage2-70b.yaml"):
        text = (REPO / "configs" / "train" / name).read_text(encoding="utf-8")
        assert "accelerate launch --config_file configs/accelerate/zero3" in text


def test_v1_recipe_hyperparameters() -> None:
    v1 = load_config(REPO / "configs/train/bimedix-v1-qlora.yaml", TrainConfig)
    assert (v1.lora.r, v1.lora.alpha, v1.lora.quantization, v1.train.warmup_steps) == (128, 64, "4bit", 10)
    assert (v1.train.lr, v1.train.scheduler, v1.train.epochs, v1.train.gradient_checkpointing) == (
        2e-4,
        "cosine",
        2,
        True,
    )
    assert v1.train.per_device_batch_size * v1.train.gradient_accumulation_steps == 16
    assert v1.lora.target_modules.endswith("(q_proj|k_proj|v_proj)")
    assert set(v1.lora.target_parameters) == {"mlp.experts.gate_up_proj", "mlp.experts.down_proj", "mlp.gate.weight"}


def test_train_config_rejects_bad_values() -> None:
    path = REPO / "configs/train/stage2-tiny.yaml"
    with pytest.raises(ConfigError, match="lora.target_modules"):
        load_config(path, TrainConfig, [r"lora.target_modules=.*\.(q_proj|v_proj)"])
    with pytest.raises(ConfigError, match="data.overlong"):
        load_config(path, TrainConfig, ["data.overlong=cut"])
    with pytest.raises(ConfigError, match="train.per_device_batch_size"):
        load_config(path, TrainConfig, ["train.per_device_batch_size=0"])
    with pytest.raises(ConfigError, match="stage"):
        load_config(path, TrainConfig, ["stage=stage3"])
    with pytest.raises(ConfigError, match="QLoRA applies to stage 2 only"):
        load_config(REPO / "configs/train/stage1-tiny.yaml", TrainConfig, ["lora.quantization=4bit"])
    with pytest.raises(ConfigError, match="not both"):
        load_config(path, TrainConfig, ["model.language_model=x"])
    with pytest.raises(ConfigError, match="no checkpoint format"):
        load_config(path, TrainConfig, ["model.path=null", "model.language_model=x"])
    with pytest.raises(ConfigError, match="packing or modality grouping"):
        load_config(path, TrainConfig, ["data.packing=true"])
    with pytest.raises(ConfigError, match="composed model loads unquantised"):
        load_config(REPO / "configs/train/stage2-8b.yaml", TrainConfig, ["lora.quantization=4bit"])
    with pytest.raises(ConfigError, match="lora.dropout: must be 0"):
        load_config(path, TrainConfig, ["lora.target_parameters=[mlp.gate.weight]"])


ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_every_accelerate_config_loads(path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes >= 1
    kind = str(cfg.distributed_type)
    if "DEEPSPEED" in kind:
        ds_file = REPO / cfg.deepspeed_config["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        assert ds["zero_optimization"]["stage"] in (2, 3)
        assert ds["gradient_accumulation_steps"] == "auto"  # taken from the training config
        assert cfg.deepspeed_config["zero3_init_flag"] == (ds["zero_optimization"]["stage"] == 3)
    elif "FSDP" in kind:
        assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    else:
        assert "MULTI_GPU" in kind and path.name.startswith("cpu_")  # torchrun-launched DDP


def test_deepspeed_configs_are_llavas() -> None:
    """ds_zero3*.json hold the values of LLaVA's scripts/zero3.json and zero3_offload.json (the released runs')."""
    zero3 = json.loads((REPO / "configs/accelerate/ds_zero3.json").read_text())["zero_optimization"]
    offload = json.loads((REPO / "configs/accelerate/ds_zero3_offload.json").read_text())
    assert zero3["stage3_gather_16bit_weights_on_model_save"] and zero3["sub_group_size"] == 1e9
    assert offload["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert offload["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert offload["scheduler"]["type"] == "WarmupLR" and offload["optimizer"]["type"] == "AdamW"


def test_accelerate_configs_cover_every_launch() -> None:
    assert {p.stem for p in ACCELERATE_CONFIGS} >= {
        "zero2",
        "zero3",
        "zero3_offload",
        "fsdp",
        "cpu_ddp",
        "cpu_zero2",
        "cpu_zero3",
    }
