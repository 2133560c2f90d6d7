"""4-bit (NF4, bitsandbytes) loading as a load option, for inference and for QLoRA training.

Skipped without a CUDA GPU or without bitsandbytes; run on a GPU machine with `pytest -m gpu tests/gpu`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from bimedix2.engine import Engine
from bimedix2.model.loader import LoadOptions, load_model
from bimedix2.types import GenParams, ImageRef, Message

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="4-bit loading needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="4-bit loading needs bitsandbytes"),
]

REPO = Path(__file__).parents[2]


def test_four_bit_llava_keeps_vision_projector_and_head_unquantised(tiny_llava_path: Path, png_path: Path) -> None:
    import bitsandbytes as bnb

    loaded = load_model(str(tiny_llava_path), LoadOptions(device="cuda", quantization="4bit"))
    model = loaded.model
    assert loaded.device.type == "cuda" and loaded.image_aspect_ratio == "pad"
    quantized = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert quantized and all("language_model" in n for n in quantized)
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    conv = [Message("user", "What is seen?", (ImageRef(png_path),))]
    reply = Engine(loaded).generate(conv, GenParams(max_new_tokens=6, temperature=0))
    assert reply.completion_tokens >= 1


def test_qlora_loads_through_load_model(tiny_llava_path: Path) -> None:
    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.modeling import load_for_training

    cfg = load_config(
        REPO / "configs/train/stage2-tiny.yaml",
        TrainConfig,
        [f"model.path={tiny_llava_path}", "lora.quantization=4bit"],
    )
    loaded = load_for_training(cfg, "cuda", "bf16")
    assert getattr(loaded.model, "is_loaded_in_4bit", False) and loaded.model.config.use_cache is False
    assert loaded.info.source_format == "hf-llava"
