"""Tiny random models and tokenizers, built in-process, for tests and benchmarks.

They have the real architectures (Llama + CLIP + 2-layer GELU projector) and the real
Llama-3 special tokens, only with hidden sizes of 16-64, so every code path that runs on
BiMediX2-8B runs here in milliseconds. Weights are random: their answers are noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from ..conversation import BIMEDIX2_LLAMA3_TEMPLATE
from ..images import CLIP_MEAN, CLIP_STD

LLAMA3_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
)

_CORPUS = [
    "What abnormality is seen in this chest X-ray? The image shows a right lower lobe consolidation.",
    "Is there a pleural effusion? No, the costophrenic angles are clear.",
    "Describe the MRI of the brain. There is a hyperintense lesion in the left temporal lobe.",
    "The histology slide shows glandular tissue with atypical nuclei, consistent with adenocarcinoma.",
    "A 45-year-old man presents with chest pain radiating to the left arm. What is the diagnosis?",
    "Answer in English. Iron deficiency anemia causes fatigue, pallor and shortness of breath.",
    "ما هو التشخيص المحتمل لهذه الأشعة السينية للصدر؟ تظهر الصورة التهابا رئويا في الفص السفلي الأيمن.",
    "هل يوجد انصباب جنبي؟ لا، الزوايا الضلعية الحجابية واضحة.",
    "صف صورة الرنين المغناطيسي للدماغ. توجد آفة مفرطة الكثافة في الفص الصدغي الأيسر.",
    "أجب باللغة العربية الفصحى. فقر الدم الناجم عن نقص الحديد يسبب التعب والشحوب وضيق التنفس.",
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions.",
    "0123456789 mg/dL mmHg CT MRI X-ray 5 mg metformin paracetamol ٠١٢٣٤٥٦٧٨٩",
]


# The shape of Llama-3-Instruct's own template (no default system prompt), as shipped in the
# tokenizer_config.json of Llama-3.1 checkpoints and of the original BiMediX2 release.
LLAMA3_INSTRUCT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def build_tiny_tokenizer(
    vocab_size: int = 400, *, with_image_token: bool = True, chat_template: str = LLAMA3_INSTRUCT_TEMPLATE
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Llama-3's special tokens (and `<image>` if asked).

    Byte-level, so any text (Arabic included) round-trips exactly; like Llama-3's, it adds
    `<|begin_of_text|>` when asked for special tokens.
    """
    specials = list(LLAMA3_SPECIAL_TOKENS) + (["<image>"] if with_image_token else [])
    tok = byte_level_bpe(specials, "<|begin_of_text|>", vocab_size)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        additional_special_tokens=["<image>"] if with_image_token else None,
        chat_template=chat_template,
    )


def byte_level_bpe(specials: list[str], bos: str, vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on the tiny corpus that puts `bos` in front when asked for special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return tok


def tiny_llama_config(vocab_size: int, hidden: int = 32, layers: int = 2, **overrides: Any) -> LlamaConfig:
    """A 2-layer Llama config with Llama-3.1-style rope settings, scaled down."""
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=4,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def tiny_clip_config(image_size: int = 56, patch_size: int = 14, hidden: int = 32) -> CLIPVisionConfig:
    """A 2-layer CLIP vision config (ViT-L/14-336 shape, scaled down)."""
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden,
        hidden_act="quick_gelu",
    )


def tiny_image_processor(image_size: int) -> CLIPImageProcessorPil:
    """CLIP preprocessing (resize shortest edge, centre crop, CLIP mean/std) at `image_size`."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def build_tiny_llava(
    *, image_size: int = 56, hidden: int = 32, seed: int = 0
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A random transformers Llava model and its processor, BiMediX2-shaped, in memory."""
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer(with_image_token=True, chat_template=BIMEDIX2_LLAMA3_TEMPLATE)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        text_config=tiny_llama_config(len(tokenizer), hidden=hidden),
        vision_config=tiny_clip_config(image_size, hidden=hidden),
        image_token_index=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=tiny_image_processor(image_size),
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=BIMEDIX2_LLAMA3_TEMPLATE,
    )
    return model, processor


def save_tiny_llava(out_dir: Path, **kwargs: Any) -> Path:
    """Write a tiny transformers Llava checkpoint (model + processor) to `out_dir`."""
    model, processor = build_tiny_llava(**kwargs)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def save_tiny_causal_lm(out_dir: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """Write a tiny Llama causal LM with a Llama-3-style tokenizer and chat template."""
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer(with_image_token=False)
    model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), hidden=hidden)).eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# Whole Arabic words a bilingual tokenizer adds to Llama-3's vocabulary (BiMediX2-8B-Bi ships a larger one).
_ARABIC_EXTRA_WORDS = ("الالتهاب", "الرئوي", "استرواح", "الصدر", "الأشعة", "السينية", "التشخيص", "المريض")


def extra_vocabulary(count: int) -> list[str]:
    """`count` tokens to add to a tiny tokenizer: Arabic words first, then numbered ones."""
    words = list(_ARABIC_EXTRA_WORDS[:count])
    return words + [f"<|bi_extra_{i}|>" for i in range(count - len(words))]


def save_tiny_llava_llama(
    out_dir: Path,
    *,
    image_size: int = 56,
    hidden: int = 32,
    seed: int = 0,
    extra_tokens: int = 0,
    embedding_rows: int | None = None,
) -> dict[str, Any]:
    """Write a tiny checkpoint in the original LLaVA `llava_llama` layout of `MBZUAI/BiMediX2-8B`.

    `extra_tokens` grows the tokenizer past the base vocabulary (as `-8B-Bi`'s is) with the
    embedding trained to match; `embedding_rows` pads the embedding and `lm_head` past the
    tokenizer (as checkpoints padded to a multiple of 64 are).

    Layout: `config.json` with `model_type: llava_llama` and the `mm_*` fields, one safetensors
    file with `model.embed_tokens`, `model.layers.*`, `model.norm`, `lm_head`,
    `model.mm_projector.{0,2}.*` and `model.vision_tower.vision_tower.vision_model.*`, the
    tokenizer (no `<image>` token, as released), and the CLIP tower's config and preprocessor
    in `out_dir/clip-vision-tower/` referenced by `mm_vision_tower`.

    Returns the in-memory parts (`llm`, `vision`, `projector`, `tokenizer`) so tests can build a
    reference model from the same weights.
    """
    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(with_image_token=False)
    if extra_tokens:
        tokenizer.add_tokens(extra_vocabulary(extra_tokens))
    rows = embedding_rows or len(tokenizer)
    if rows < len(tokenizer):
        raise ValueError(f"embedding_rows {rows} is fewer than the tokenizer's {len(tokenizer)} tokens")
    llama_cfg = tiny_llama_config(rows, hidden=hidden)
    llm = LlamaForCausalLM(llama_cfg).eval()
    vision_cfg = tiny_clip_config(image_size, hidden=hidden)
    vision = CLIPVisionModel(vision_cfg).eval()
    projector = torch.nn.Sequential(
        torch.nn.Linear(vision_cfg.hidden_size, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
    )

    tensors: dict[str, torch.Tensor] = {}
    for key, value in llm.state_dict().items():  # already model.* / lm_head.* as in LlavaLlamaForCausalLM
        tensors[key] = value
    vision_module = getattr(vision, "vision_model", vision)
    for key, value in vision_module.state_dict().items():
        tensors[f"model.vision_tower.vision_tower.vision_model.{key}"] = value
    for key, value in projector.state_dict().items():
        tensors[f"model.mm_projector.{key}"] = value
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(out_dir / "model.safetensors"), metadata={"format": "pt"}
    )

    tower_dir = out_dir / "clip-vision-tower"
    vision_cfg.save_pretrained(tower_dir)
    tiny_image_processor(image_size).save_pretrained(tower_dir)
    tokenizer.save_pretrained(out_dir)

    # Field names and values as in MBZUAI/BiMediX2-8B's config.json (sizes scaled down).
    config = {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama",
        "hidden_size": hidden,
        "intermediate_size": llama_cfg.intermediate_size,
        "num_hidden_layers": llama_cfg.num_hidden_layers,
        "num_attention_heads": llama_cfg.num_attention_heads,
        "num_key_value_heads": llama_cfg.num_key_value_heads,
        "vocab_size": rows,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "hidden_act": "silu",
        "attention_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|eot_id|>"),
        "torch_dtype": "float32",
        "use_cache": True,
        "image_aspect_ratio": "pad",
        "mm_hidden_size": vision_cfg.hidden_size,
        "mm_patch_merge_type": "flat",
        "mm_projector_lr": None,
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": "clip-vision-tower",
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
        "tune_mm_mlp_adapter": False,
        "freeze_mm_mlp_adapter": False,
        "use_mm_proj": True,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return {"llm": llm, "vision": vision, "projector": projector, "tokenizer": tokenizer, "config": config}


# Llama weight names in llama.cpp's GGUF spelling (per layer, then the rest).
_GGUF_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_GGUF_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}


def _gguf_name(key: str) -> str:
    module, _, suffix = key.rpartition(".")
    if module.startswith("model.layers."):
        index, _, rest = module.removeprefix("model.layers.").partition(".")
        return f"blk.{index}.{_GGUF_LAYER_NAMES[rest]}.{suffix}"
    return f"{_GGUF_NAMES[module]}.{suffix}"


def _rope_permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order (rotary halves interleaved); transformers undoes it on load."""
    grouped = weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
    return grouped.swapaxes(1, 2).reshape(weight.shape)


def save_tiny_gguf(path: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """Write a tiny Llama causal LM as one float32 GGUF file, as llama.cpp's converter lays it out."""
    import gguf

    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer(with_image_token=False)
    config = tiny_llama_config(len(tokenizer), hidden=hidden)
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(hidden)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(hidden // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokenizer))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _write_gguf_tokenizer(writer, tokenizer)
    for key, value in model.state_dict().items():
        if key.endswith("q_proj.weight"):
            value = _rope_permute(value, config.num_attention_heads)
        elif key.endswith("k_proj.weight"):
            value = _rope_permute(value, config.num_key_value_heads)
        writer.add_tensor(_gguf_name(key), value.detach().float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _write_gguf_tokenizer(writer: Any, tokenizer: PreTrainedTokenizerFast) -> None:
    """The byte-level BPE vocabulary, merges, special-token ids and chat template as GGUF metadata."""
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = sorted(spec["model"]["vocab"].items(), key=lambda item: item[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    specials = set(LLAMA3_SPECIAL_TOKENS)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types(
        [gguf.TokenType.CONTROL if token in specials else gguf.TokenType.NORMAL for token, _ in vocab]
    )
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(True)
    writer.add_chat_template(tokenizer.chat_template)
