"""The BiMediX v1 QLoRA path on a GPU: a tiny random Mixtral loads in 4 bits and trains LoRA on
attention, experts and router for a few bf16 steps. Skipped without CUDA or bitsandbytes:
`pytest -m gpu tests/gpu/test_train_qlora.py` (or `python tests/gpu/test_train_qlora.py` for the figures).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes"),
]

REPO = Path(__file__).parents[2]
TEXT = REPO / "tests/unit/train/fixtures/text_chat.jsonl"


def save_tiny_mixtral(out: Path) -> Path:
    from transformers import MixtralConfig, MixtralForCausalLM

    from bimedix2.model.tiny import build_tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(with_image_token=False)
    config = MixtralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    MixtralForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def qlora_steps(workdir: Path) -> dict[str, object]:
    import bitsandbytes as bnb
    from transformers import TrainerCallback

    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.recipes import run_stage2

    seen: dict[str, object] = {}

    class Capture(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
            seen["quantized"] = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
            seen["trainable"] = [n for n, p in model.named_parameters() if p.requires_grad]

    cfg = load_config(
        REPO / "configs/train/bimedix-v1-qlora.yaml",
        TrainConfig,
        [
            f"model.path={save_tiny_mixtral(workdir / 'mixtral')}",
            f"data.train=[{TEXT}]",
            f"train.output_dir={workdir / 'run'}",
            "data.max_length=256",
            "train.max_steps=3",
            "train.gradient_accumulation_steps=1",
            "train.logging_steps=1",
            "train.device=cuda",
        ],
    )
    torch.cuda.reset_peak_memory_stats()
    result = run_stage2(cfg, callbacks=[Capture()], show_progress=False)
    lines = [json.loads(x) for x in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    return {
        "steps": result.global_step,
        "losses": [x["loss"] for x in lines if "loss" in x],
        "linear4bit_modules": seen["quantized"],
        "adapters_on": sorted({n.split(".lora_")[0].split(".")[-1] for n in seen["trainable"]}),  # type: ignore[union-attr]
        "trainable": result.trainable,
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


def test_v1_qlora_trains_a_tiny_mixtral(tmp_path: Path) -> None:
    figures = qlora_steps(tmp_path)
    assert figures["steps"] == 3 and all(0 < x < 20 for x in figures["losses"])  # type: ignore[union-attr]
    assert figures["linear4bit_modules"] > 0  # the attention linears are NF4 (the fused experts stay bf16)
    assert {"q_proj", "k_proj", "v_proj", "experts", "gate"} <= set(figures["adapters_on"])  # type: ignore[arg-type]
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(qlora_steps(Path(tmp)), indent=2))
    sys.exit(0)
