"""A tiny random checkpoint in the `phi3_v` layout of MBZUAI/BiMediX2-4B (Phi-3.5-vision), for tests.

Only the files transformers reads besides the custom code: config, processor config, tokenizer
and weights under Phi-3-vision's names. The custom Python files are the checkpoint author's code
and are not written (see `bimedix2.model.formats.phi3_v`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionModel, PreTrainedTokenizerFast

from ..images import CLIP_MEAN, CLIP_STD
from .tiny import byte_level_bpe, tiny_clip_config

# Phi-3's special tokens (`<s>` is its BOS, `<|end|>` ends a turn, `<|endoftext|>` is its EOS).
PHI3_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>")

# The chat template Phi-3.5-vision-instruct's tokenizer ships: text content only, the caller writes
# `<|image_N|>` placeholders into the text.
PHI3_VISION_OWN_TEMPLATE = (
    "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}"
    "{{- '<|assistant|>\\n' -}}{% endif %}"
)


def build_tiny_phi3_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Phi-3's special tokens that adds `<s>` as Phi-3's does."""
    tok = byte_level_bpe(list(PHI3_SPECIAL_TOKENS), "<s>", vocab_size)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=["<|system|>", "<|end|>", "<|user|>", "<|assistant|>"],
        chat_template=PHI3_VISION_OWN_TEMPLATE,
    )


def save_tiny_phi3_v(out_dir: Path, *, hidden: int = 32, seed: int = 0, num_crops: int = 4) -> Path:
    """Write a tiny checkpoint in the `phi3_v` layout of `MBZUAI/BiMediX2-4B` (Phi-3.5-vision), minus its code.

    Layout: `config.json` (`model_type: phi3_v`, `auto_map` naming the custom modules, `embd_layer`,
    `img_processor`), `preprocessor_config.json` (`auto_map` of the processors, `num_crops`,
    `num_img_tokens`), a Phi-3 tokenizer, and one safetensors file with `model.embed_tokens`,
    `model.layers.*.self_attn.qkv_proj` / `mlp.gate_up_proj` ..., `lm_head`,
    `model.vision_embed_tokens.{glb_GN,sub_GN,img_projection.{0,2},img_processor.vision_model.*}`.
    The custom Python files themselves are not written: they are the checkpoint author's code.
    """
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_phi3_tokenizer()
    heads = 4
    text = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    tensors = dict(Phi3ForCausalLM(text).state_dict())
    vision_cfg = tiny_clip_config(56, hidden=hidden)
    vision = CLIPVisionModel(vision_cfg)
    prefix = "model.vision_embed_tokens."
    for key, value in getattr(vision, "vision_model", vision).state_dict().items():
        tensors[f"{prefix}img_processor.vision_model.{key}"] = value
    merged = vision_cfg.hidden_size * 4  # 2x2 patches merged into the channel dimension
    projection = torch.nn.Sequential(torch.nn.Linear(merged, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden))
    for key, value in projection.state_dict().items():
        tensors[f"{prefix}img_projection.{key}"] = value
    tensors[f"{prefix}glb_GN"] = torch.zeros(1, 1, merged)
    tensors[f"{prefix}sub_GN"] = torch.randn(1, 1, 1, merged) * 0.02
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / "model.safetensors"), {"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    _set_json(out_dir / "tokenizer_config.json", add_bos_token=True, add_eos_token=False)
    half_head = hidden // heads // 2
    _write_json(out_dir / "config.json", _phi3_v_config(text, vision_cfg.hidden_size, half_head))
    _write_json(
        out_dir / "preprocessor_config.json",
        {
            "auto_map": {
                "AutoProcessor": "processing_phi3_v.Phi3VProcessor",
                "AutoImageProcessor": "image_processing_phi3_v.Phi3VImageProcessor",
            },
            "image_processor_type": "Phi3VImageProcessor",
            "processor_class": "Phi3VProcessor",
            "num_crops": num_crops,
            "num_img_tokens": 144,
            "image_mean": list(CLIP_MEAN),
            "image_std": list(CLIP_STD),
        },
    )
    return out_dir


def _phi3_v_config(text: Any, vision_hidden: int, half_head: int) -> dict[str, Any]:
    """config.json field names and values as in Phi-3.5-vision-instruct's (sizes scaled down)."""
    return {
        "architectures": ["Phi3VForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_phi3_v.Phi3VConfig",
            "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM",
        },
        "model_type": "phi3_v",
        "embd_layer": {
            "embedding_cls": "image",
            "hd_transform_order": "sub_glb",
            "projection_cls": "mlp",
            "use_hd_transform": True,
            "with_learnable_separator": True,
        },
        "img_processor": {
            "image_dim_out": vision_hidden,
            "model_name": "openai/clip-vit-large-patch14-336",
            "name": "clip_vision_model",
            "num_img_tokens": 144,
        },
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "hidden_act": "silu",
        "vocab_size": text.vocab_size,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_scaling": {"type": "su", "short_factor": [1.0] * half_head, "long_factor": [1.0] * half_head},
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "sliding_window": 131072,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.38.1",
        "use_cache": True,
    }


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")


def _set_json(path: Path, **fields: Any) -> None:
    _write_json(path, {**json.loads(path.read_text(encoding="utf-8")), **fields})
