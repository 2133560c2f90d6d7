"""BiMediX v1's recipe: LoRA on attention, experts and router of a Mixtral; its trainable share from shapes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from transformers import MixtralConfig, MixtralForCausalLM, TrainerCallback

from bimedix2.train.lora_share import Shapes, base_parameters, lora_parameters, lora_share

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import tiny_config  # noqa: E402

V1_TARGETS = ("q_proj", "k_proj", "v_proj", "w1", "w2", "w3", "gate")

# Mixtral-8x7B(-Instruct-v0.1)'s config.json values
MIXTRAL_8X7B = MixtralConfig(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    num_local_experts=8,
    num_experts_per_tok=2,
    tie_word_embeddings=False,
)


def test_mixtral_8x7b_shares() -> None:
    shapes = Shapes.of(MIXTRAL_8X7B)
    assert base_parameters(shapes) == 46_702_792_704  # Mixtral-8x7B's published 46.7B
    assert lora_parameters(shapes, 128, V1_TARGETS) == 1_904_246_784
    assert lora_share(shapes, 128, V1_TARGETS) == pytest.approx(0.0408, abs=5e-5)  # the paper's ~4%
    assert lora_parameters(shapes, 128, V1_TARGETS, experts="fused") == 1_770_029_056
    assert lora_share(shapes, 128, ("q_proj", "k_proj", "v_proj")) == pytest.approx(0.00162, abs=5e-6)  # ~0.16%
    with pytest.raises(ValueError, match="Available"):
        lora_parameters(shapes, 8, ["gate_proj"])
    with pytest.raises(ValueError, match="target both or neither"):
        lora_parameters(shapes, 8, ["w1"], experts="fused")


def test_dense_llama_counts() -> None:
    from transformers import LlamaConfig

    llama_8b = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
    )
    assert base_parameters(Shapes.of(llama_8b)) == 8_030_261_248  # Llama-3.1-8B
    all_linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert lora_parameters(Shapes.of(llama_8b), 8, all_linear) == 20_971_520  # BiMediX2 stage 2: r=8


@pytest.fixture(scope="module")
def tiny_mixtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Mixtral (4 experts, top-2) with a Llama-3-style tokenizer and chat template."""
    import torch

    from bimedix2.model.tiny import build_tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(with_image_token=False)
    config = MixtralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    out = tmp_path_factory.mktemp("mixtral") / "tiny-mixtral"
    MixtralForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class Capture(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
        self.model = model


def test_v1_recipe_trains_a_tiny_mixtral_one_step(tiny_mixtral: Path, tmp_path: Path) -> None:
    from bimedix2.train.recipes import run_stage2

    capture = Capture()
    cfg = tiny_config(
        "bimedix-v1-qlora.yaml",
        tiny_mixtral,
        tmp_path / "v1",
        f"data.train=[{Path(__file__).parent / 'fixtures' / 'text_chat.jsonl'}]",
        "data.max_length=256",
        "lora.quantization=none",  # 4-bit needs CUDA: tests/gpu/test_train_qlora.py
        "model.dtype=float32",
        "train.precision=fp32",
        "train.device=cpu",
        "train.max_steps=1",
        "train.gradient_accumulation_steps=1",
        "train.logging_steps=1",
    )
    result = run_stage2(cfg, callbacks=[capture], show_progress=False)
    assert result.global_step == 1 and result.train_loss > 0
    model = capture.model
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in trainable)
    for part in ("q_proj", "k_proj", "v_proj", "mlp.experts", "mlp.gate"):
        assert any(part in n for n in trainable), part  # attention, experts and router
    # two adapters on each layer's experts (peft nests one per tensor: gate_up_proj = w1+w3, down_proj = w2)
    assert sum("layers.0.mlp.experts" in n and "lora_A" in n for n in trainable) == 2
    shapes = Shapes.of(model.config)
    assert sum(p.numel() for p in trainable.values()) == lora_parameters(shapes, 128, V1_TARGETS, experts="fused")
    assert (result.final_dir / "adapter_model.safetensors").is_file()
