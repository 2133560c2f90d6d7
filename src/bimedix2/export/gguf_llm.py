"""The language model as a llama.cpp `llama` GGUF: hyperparameters, tokenizer, weights.

Weight names come from `gguf.get_tensor_name_map` (the table llama.cpp's converter uses), fed
the decoder's parameters under their `LlamaForCausalLM` names, whichever wrapper holds them
(a Llava model or a plain causal LM).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import RESEARCH_ONLY, ExportError, PlannedTensor, float_type, plan_tensor, write_gguf
from .gguf_vocab import VocabSummary, add_tokenizer

if TYPE_CHECKING:
    import gguf
    import torch
    from transformers import PretrainedConfig

    from ..model.base import LoadedModel

SUPPORTED_MODEL_TYPES = ("llama",)


@dataclass(frozen=True)
class LlmSummary:
    """What the language-model GGUF holds."""

    path: Path
    hidden_size: int
    block_count: int
    rope_type: str
    tensor_count: int
    vocab: VocabSummary


def check_llama(config: PretrainedConfig) -> None:
    """Refuse language models that are not the Llama architecture llama.cpp's `llama` arch runs."""
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(
            f"GGUF export supports Llama-architecture language models ({', '.join(SUPPORTED_MODEL_TYPES)}); "
            f"this one is {config.model_type!r}"
        )
    if getattr(config, "mlp_bias", False):
        raise ExportError("Llama models with MLP biases have no llama.cpp `llama` tensors to hold them")


def rope_parameters(config: PretrainedConfig) -> dict[str, Any]:
    """RoPE settings as one mapping (transformers 5 `rope_parameters`, or older `rope_theta` + `rope_scaling`)."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        return dict(params)
    scaling = getattr(config, "rope_scaling", None) or {}
    return {"rope_theta": getattr(config, "rope_theta", 10000.0), **scaling}


def head_dim(config: PretrainedConfig) -> int:
    """Per-head width (`head_dim` when set, else hidden / heads)."""
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def add_hparams(writer: gguf.GGUFWriter, config: PretrainedConfig, out_type: str, name: str) -> str:
    """Write the `llama.*` hyperparameters; returns the RoPE type written."""
    import gguf

    heads = config.num_attention_heads
    writer.add_name(name)
    writer.add_description(f"BiMediX2 toolkit export. {RESEARCH_ONLY}")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads or heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim(config))
    if head_dim(config) != config.hidden_size // heads:
        writer.add_key_length(head_dim(config))
        writer.add_value_length(head_dim(config))
    rope = rope_parameters(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    rope_type = str(rope.get("rope_type", rope.get("type", "default")))
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope_type not in ("default", "llama3"):  # llama3 scaling travels as the rope_freqs tensor
        raise ExportError(f"RoPE type {rope_type!r} has no GGUF export here (default, linear and llama3 do)")
    writer.add_vocab_size(config.vocab_size)
    file_type = gguf.LlamaFileType.ALL_F32 if out_type == "F32" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(file_type)
    return rope_type


def rope_permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder q/k rows from transformers' half-split rotary layout to llama.cpp's interleaved pairs.

    Written here because no library exposes it (llama.cpp's converter does it inside its Llama class).
    """
    rows = weight.shape[0]
    grouped = weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
    return grouped.swapaxes(1, 2).reshape(weight.shape)


def rope_freq_factors(decoder: Any, config: PretrainedConfig) -> torch.Tensor:
    """Llama-3.1 RoPE scaling as llama.cpp's per-dimension frequency divisors (`rope_freqs.weight`).

    Taken from transformers' own scaled `inv_freq`, divided into the unscaled one, so the scaling
    formula lives in one place (transformers), not copied here.
    """
    import torch

    rotary = getattr(decoder, "rotary_emb", None)
    if rotary is None or not hasattr(rotary, "inv_freq"):
        raise ExportError("llama3 RoPE scaling needs the decoder's rotary embedding to read its frequencies")
    dim = head_dim(config)
    theta = float(rope_parameters(config)["rope_theta"])
    base = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).double() / dim))
    return (base / rotary.inv_freq.double()).float()


def plan_llm_tensors(model: Any, config: PretrainedConfig, out_type: str, rope_type: str) -> list[PlannedTensor]:
    """Every language-model tensor under its GGUF name (q/k permuted), plus `rope_freqs` for llama3 RoPE."""
    import gguf
    import numpy as np

    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    state = {f"model.{key}": value for key, value in decoder.state_dict().items()}
    if head.weight.data_ptr() != decoder.embed_tokens.weight.data_ptr():  # tied heads reuse token_embd
        state["lm_head.weight"] = head.weight
    planned = []
    for key, tensor in state.items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"language-model tensor {key} has no llama.cpp `llama` name")
        transform = None
        if ".self_attn.q_proj." in key:
            transform = lambda t, n=heads: rope_permute(t, n)  # noqa: E731
        elif ".self_attn.k_proj." in key:
            transform = lambda t, n=kv_heads: rope_permute(t, n)  # noqa: E731
        planned.append(plan_tensor(name, tensor, float_type(tensor.ndim, out_type), transform))
    if rope_type == "llama3":
        factors = rope_freq_factors(decoder, config)
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        planned.insert(0, plan_tensor(name, factors, np.float32))
    return planned


def write_llm_gguf(loaded: LoadedModel, path: Path, out_type: str, *, name: str) -> LlmSummary:
    """Write the language model of `loaded` (any format) as a llama.cpp GGUF at `path` in F32 or F16."""
    import gguf

    if out_type not in ("F32", "F16"):
        raise ExportError(f"the language model is written as F32 or F16, then quantized; not {out_type}")
    decoder = loaded.model.get_decoder()
    config = decoder.config
    check_llama(config)
    if config.vocab_size != decoder.embed_tokens.weight.shape[0]:
        raise ExportError(
            f"config vocab_size {config.vocab_size} != embedding rows {decoder.embed_tokens.weight.shape[0]}"
        )
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    rope_type = add_hparams(writer, config, out_type, name)
    vocab = add_tokenizer(writer, loaded.tokenizer, loaded.template, config.vocab_size)
    tensors = plan_llm_tensors(loaded.model, config, out_type, rope_type)
    write_gguf(writer, tensors, desc=f"language model {out_type}")
    return LlmSummary(path, config.hidden_size, config.num_hidden_layers, rope_type, len(tensors), vocab)
