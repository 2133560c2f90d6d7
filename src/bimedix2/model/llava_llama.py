"""The original LLaVA `llava_llama` checkpoint layout (MBZUAI/BiMediX2-8B, -8B-Bi, -70B).

Reads such a checkpoint into transformers' `LlavaForConditionalGeneration`, in memory or
written out by `convert_llava_llama`. transformers ships no converter for this layout
(its LLaVA conversion script targets llava-1.5 hub repos and pads the vocabulary), hence
this module. Weight mapping:

    model.embed_tokens / model.layers.* / model.norm  ->  language model
    lm_head                                           ->  lm_head
    model.mm_projector.0 / .2                         ->  multi_modal_projector.linear_1 / linear_2
    model.vision_tower.vision_tower.vision_model.*    ->  vision tower

The released tokenizer has no `<image>` token: one is added, the embeddings and lm_head grow
by one row set to the mean of the others (deterministic; that row's input embedding is never
used, and the engine never samples it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import (
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerBase,
)
from transformers.initialization import no_init_weights

from ..conversation import BIMEDIX2_LLAMA3
from ..errors import ModelLoadError
from ..fileio import atomic_directory
from ..images import CLIP_MEAN, CLIP_STD
from .base import read_config

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"

# Fields LLaVA adds to a Llama config; everything else is passed to LlamaConfig unchanged
# (so legacy fields such as rope_theta / rope_scaling keep their meaning).
_LLAVA_FIELDS = {
    "architectures",
    "model_type",
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "tokenizer_model_max_length",
    "tokenizer_padding_side",
    "tune_mm_mlp_adapter",
    "freeze_mm_mlp_adapter",
    "use_mm_proj",
    "unfreeze_mm_vision_tower",
    "_name_or_path",
    "transformers_version",
}

# Vision towers the released checkpoints name, so they load offline once their weights are in
# the checkpoint (the values of the openai CLIP ViT-L/14 vision configs; they differ in image size).
_CLIP_VIT_L14: dict[str, Any] = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)
KNOWN_VISION_TOWERS: dict[str, dict[str, Any]] = {
    "openai/clip-vit-large-patch14-336": {**_CLIP_VIT_L14, "image_size": 336},
    "openai/clip-vit-large-patch14": {**_CLIP_VIT_L14, "image_size": 224},
}


@dataclass(frozen=True)
class VisionTower:
    """Where the CLIP tower's config, preprocessing and (if needed) weights come from."""

    name: str
    config: CLIPVisionConfig
    image_processor: CLIPImageProcessorPil
    local_dir: Path | None


def _clip_processor(image_size: int) -> CLIPImageProcessorPil:
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def resolve_vision_tower(raw: dict[str, Any], checkpoint: Path, override: str | None = None) -> VisionTower:
    """Find the CLIP tower named by `mm_vision_tower` (or `override`).

    Order: a local directory (absolute, or relative to the checkpoint); a tower this module
    knows (config and preprocessing built in, so no download is needed); the Hugging Face Hub.
    """
    name = override or raw.get("mm_vision_tower")
    if not name:
        raise ModelLoadError(f"{checkpoint}/config.json: no mm_vision_tower; pass the CLIP tower explicitly")
    for candidate in (Path(name), checkpoint / name):
        if candidate.is_dir():
            config = CLIPVisionConfig.from_pretrained(candidate)
            if (candidate / "preprocessor_config.json").is_file():
                processor = CLIPImageProcessorPil.from_pretrained(candidate)
            else:
                processor = _clip_processor(config.image_size)
            return VisionTower(name, config, processor, candidate)
    if name in KNOWN_VISION_TOWERS:
        config = CLIPVisionConfig(**KNOWN_VISION_TOWERS[name])
        return VisionTower(name, config, _clip_processor(config.image_size), None)
    try:
        config = CLIPVisionConfig.from_pretrained(name)
        processor = CLIPImageProcessorPil.from_pretrained(name)
    except OSError as exc:
        raise ModelLoadError(
            f"vision tower {name!r} (mm_vision_tower) is neither a local directory nor downloadable: {exc}"
        ) from None
    return VisionTower(name, config, processor, None)


def text_config(raw: dict[str, Any]) -> LlamaConfig:
    """The Llama config inside a llava_llama config (LLaVA's extra fields removed)."""
    fields = {k: v for k, v in raw.items() if k not in _LLAVA_FIELDS and not k.startswith("mm_")}
    return LlamaConfig(**fields)


def llava_config(raw: dict[str, Any], tower: VisionTower, vocab_size: int, image_token_id: int) -> LlavaConfig:
    """The transformers LlavaConfig equivalent to a llava_llama config."""
    if raw.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise ModelLoadError(
            f"mm_projector_type {raw.get('mm_projector_type')!r} is not supported; BiMediX2 uses 'mlp2x_gelu'"
        )
    select = raw.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise ModelLoadError(f"mm_vision_select_feature {select!r} is not supported (expected 'patch' or 'cls_patch')")
    if raw.get("mm_use_im_start_end") or raw.get("mm_use_im_patch_token"):
        raise ModelLoadError("checkpoints with mm_use_im_start_end / mm_use_im_patch_token are not supported")
    if raw.get("mm_hidden_size") not in (None, tower.config.hidden_size):
        raise ModelLoadError(
            f"mm_hidden_size {raw['mm_hidden_size']} does not match the vision tower's hidden size "
            f"{tower.config.hidden_size} ({tower.name})"
        )
    text = text_config(raw)
    text.vocab_size = vocab_size
    config = LlavaConfig(
        text_config=text,
        vision_config=tower.config,
        image_token_index=image_token_id,
        vision_feature_layer=raw.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="default" if select == "patch" else "full",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
    )
    config.image_aspect_ratio = raw.get("image_aspect_ratio", "pad")
    return config


def read_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: sharded or single safetensors, or PyTorch .bin files."""
    files = sorted(checkpoint.glob("*.safetensors"))
    if files:
        tensors: dict[str, torch.Tensor] = {}
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    tensors[key] = handle.get_tensor(key)
        return tensors
    bins = sorted(checkpoint.glob("pytorch_model*.bin"))
    if bins:
        tensors = {}
        for file in bins:
            tensors.update(torch.load(file, map_location="cpu", weights_only=True))
        return tensors
    raise ModelLoadError(f"{checkpoint}: no *.safetensors or pytorch_model*.bin weight files")


def split_weights(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Group llava_llama keys by destination module; unknown keys raise (nothing dropped silently)."""
    groups: dict[str, dict[str, torch.Tensor]] = {"language": {}, "lm_head": {}, "projector": {}, "vision": {}}
    projector_names = {"0": "linear_1", "2": "linear_2"}
    unknown = []
    for key, value in tensors.items():
        if key.startswith("model.vision_tower.vision_tower.vision_model."):
            groups["vision"][key.removeprefix("model.vision_tower.vision_tower.vision_model.")] = value
        elif key.startswith("model.mm_projector."):
            index, _, rest = key.removeprefix("model.mm_projector.").partition(".")
            if index not in projector_names:
                unknown.append(key)
                continue
            groups["projector"][f"{projector_names[index]}.{rest}"] = value
        elif key.startswith("lm_head."):
            groups["lm_head"][key.removeprefix("lm_head.")] = value
        elif key.endswith("rotary_emb.inv_freq"):
            continue  # a buffer old checkpoints saved; recomputed from the config
        elif key.startswith("model."):
            groups["language"][key.removeprefix("model.")] = value
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise ModelLoadError(f"unexpected weights in a llava_llama checkpoint: {shown} ({len(unknown)} in all)")
    return groups


def _load_tokenizer(checkpoint: Path, raw: dict[str, Any]) -> PreTrainedTokenizerBase:
    # config= keeps AutoTokenizer from re-reading config.json, whose model_type it does not know
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, config=text_config(raw))
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        pad = "<|finetune_right_pad_id|>" if "<|finetune_right_pad_id|>" in tokenizer.get_vocab() else None
        tokenizer.pad_token = pad or tokenizer.eos_token
    return tokenizer


def load_llava_llama(
    checkpoint: Path, *, vision_tower: str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Load a llava_llama checkpoint as a transformers Llava model and processor (on CPU)."""
    raw = read_config(checkpoint)
    if raw.get("model_type") != "llava_llama":
        raise ModelLoadError(f"{checkpoint}: model_type is {raw.get('model_type')!r}, not 'llava_llama'")
    tower = resolve_vision_tower(raw, checkpoint, vision_tower)
    tokenizer = _load_tokenizer(checkpoint, raw)
    groups = split_weights(read_weights(checkpoint))
    checkpoint_vocab = groups["language"]["embed_tokens.weight"].shape[0]
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    vocab = max(checkpoint_vocab, image_token_id + 1)
    config = llava_config(raw, tower, vocab, image_token_id)

    with no_init_weights():
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    language = model.model.language_model
    _grow_rows(groups["language"], "embed_tokens.weight", vocab)
    _grow_rows(groups["lm_head"], "weight", vocab)
    _load_strict(language, groups["language"], "language model")
    _load_strict(model.lm_head, groups["lm_head"], "lm_head")
    _load_strict(model.model.multi_modal_projector, groups["projector"], "mm_projector")
    vision_module = getattr(model.model.vision_tower, "vision_model", model.model.vision_tower)
    if groups["vision"]:
        _load_strict(vision_module, groups["vision"], "vision tower")
    else:
        log.info("checkpoint has no vision-tower weights; loading them from %s", tower.name)
        source = tower.local_dir or tower.name
        try:
            pretrained = CLIPVisionModel.from_pretrained(source, dtype=dtype)
        except OSError as exc:
            raise ModelLoadError(f"vision tower weights for {tower.name!r} not found: {exc}") from None
        model.model.vision_tower.load_state_dict(pretrained.state_dict(), strict=True)
    model.eval()

    processor = LlavaProcessor(
        image_processor=tower.image_processor,
        tokenizer=tokenizer,
        patch_size=tower.config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP has a CLS token
        image_token=IMAGE_TOKEN,
        chat_template=BIMEDIX2_LLAMA3.jinja,
    )
    return model, processor


def _grow_rows(group: dict[str, torch.Tensor], key: str, rows: int) -> None:
    """Append rows equal to the mean of the existing ones until the matrix has `rows` rows."""
    if key not in group:
        raise ModelLoadError(f"llava_llama checkpoint is missing {key}")
    weight = group[key]
    missing = rows - weight.shape[0]
    if missing > 0:
        mean = weight.float().mean(dim=0, keepdim=True).to(weight.dtype)
        group[key] = torch.cat([weight, mean.expand(missing, -1)], dim=0)


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"{what} weights do not match the config: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def convert_llava_llama(
    src: Path, dst: Path, *, vision_tower: str | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write a llava_llama checkpoint as a transformers Llava checkpoint (model + processor).

    Written to a temporary directory beside `dst` and renamed at the end, so an interrupted
    conversion never leaves a half-written `dst`. Refuses to overwrite an existing `dst`.
    """
    if dst.exists():
        raise ModelLoadError(f"{dst} already exists; choose a new output directory")
    raw = read_config(src)
    if dtype is None:
        dtype = getattr(torch, str(raw.get("torch_dtype", "float32")), torch.float32)
    model, processor = load_llava_llama(src, vision_tower=vision_tower, dtype=dtype)
    with atomic_directory(dst) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return dst
