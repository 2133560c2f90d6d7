"""The generic config loader, and every shipped training / accelerate config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from bimedix2.config import apply_overrides, config_to_dict, from_dict, load_config, save_config
from bimedix2.errors import ConfigError
from bimedix2.train.config import TrainConfig

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


def test_released_hyperparameters() -> None:
    s2 = load_config(REPO / "configs/train/stage2-8b.yaml", TrainConfig)
    assert (s2.lora.r, s2.lora.alpha, s2.train.lr, s2.train.projector_lr, s2.data.max_length) == (
        8,
        16,
        2e-4,
        2e-5,
        4096,
    )
    assert s2.train.scheduler == "cosine"
    s1 = load_config(REPO / "configs/train/stage1-8b.yaml", TrainConfig)
    assert (s1.train.lr, s1.train.per_device_batch_size, s1.data.max_length) == (1e-3, 8, 2048)
    v1 = load_config(REPO / "configs/train/bimedix-v1-qlora.yaml", TrainConfig)
    assert (v1.lora.r, v1.lora.alpha, v1.lora.quantization, v1.train.warmup_steps) == (128, 64, "4bit", 10)
    assert v1.train.per_device_batch_size * v1.train.gradient_accumulation_steps == 16
    assert v1.lora.target_modules.endswith("(q_proj|k_proj|v_proj)")


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


ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_every_accelerate_config_loads(path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes >= 1
    if cfg.deepspeed_config:
        ds_file = REPO / cfg.deepspeed_config["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text())
        assert ds["zero_optimization"]["stage"] in (2, 3)
        assert ds["gradient_accumulation_steps"] == "auto"  # taken from the training config
    else:
        assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]


def test_accelerate_configs_cover_zero2_zero3_fsdp() -> None:
    assert {p.stem for p in ACCELERATE_CONFIGS} >= {"zero2", "zero3", "fsdp"}
