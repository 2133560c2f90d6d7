"""Build a LLaVA model from its parts: a Llama-family causal LM + a CLIP vision tower + a fresh projector.

This is where BiMediX2 training starts (the released `scripts/stage1_train.sh` passes
`--model_name_or_path meta-llama/Meta-Llama-3.1-8B-Instruct --vision_tower
openai/clip-vit-large-patch14-336 --mm_projector_type mlp2x_gelu --mm_vision_select_layer -2`
to LLaVA++'s `train.py`). What that code does, and what `compose_llava` does the same way:

- projector `mlp2x_gelu`: Linear(vision hidden, LM hidden) -> GELU -> Linear(LM hidden, LM hidden),
  initialised by `nn.Linear`'s own default (LLaVA builds the `nn.Sequential` and never re-initialises
  it), seeded; transformers' `_init_weights` (normal, std 0.02) is *not* used for it;
- pad token: the Llama-3 tokenizer has none, so LLaVA++ adds `<pad>` and resizes the embeddings
  with `smart_tokenizer_and_embedding_resize`: the new input and output rows are the mean of the
  existing rows (for every conversation version but v0.5/v1, `plain` and `llama3` included);
- `<image>`: LLaVA splices features at a sentinel id (-200) that is no token; transformers' Llava
  needs a real `<image>` token, added after `<pad>` and initialised the same way (its input row
  is never read, image features replace it);
- features from the second-to-last CLIP layer with CLS dropped (`default` strategy; the processor
  counts CLIP's CLS with `num_additional_image_tokens=1`), `image_aspect_ratio=pad`;
- the BiMediX2 (LLaVA++ `conv_llama3`) chat template installed on tokenizer and processor.

`save_composed` writes the result as a plain transformers Llava checkpoint, which every
loader (`load_model`, `bimedix2 ask`, vLLM, ZeRO-3's partition-on-load) reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..conversation import BIMEDIX2_LLAMA3
from ..errors import ModelLoadError
from ..fileio import atomic_directory
from ..images import CLIP_MEAN, CLIP_STD
from .base import LoadedModel, LoadOptions

DEFAULT_VISION_TOWER = "openai/clip-vit-large-patch14-336"
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"  # what LLaVA++'s train.py adds when the tokenizer has no pad token
COMPOSE_INFO_FILE = "bimedix2_compose.json"
SOURCE_FORMAT = "composed"


@dataclass(frozen=True)
class ComposeSpec:
    """The parts of a composed LLaVA model."""

    language_model: str  # a Llama-family causal LM: hub id or local directory
    vision_tower: str = DEFAULT_VISION_TOWER  # a CLIP checkpoint (vision part used): hub id or local directory
    vision_feature_layer: int = -2  # LLaVA --mm_vision_select_layer
    image_aspect_ratio: str = "pad"  # LLaVA --image_aspect_ratio
    seed: int = 42  # the projector's initial weights


def compose_llava(spec: ComposeSpec, options: LoadOptions | None = None) -> LoadedModel:
    """The LLaVA model of `spec`, on the CPU (or `options.device`), projector freshly initialised."""
    from .formats.common import llava_model, resolve_device, resolve_dtype
    from .loader import local_checkpoint

    options = options or LoadOptions()
    if options.quantization != "none":
        raise ModelLoadError(
            "a composed model cannot be loaded in 4 bits directly; write it with `bimedix2 compose` first "
            "and load that checkpoint with quantization"
        )
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    llm_dir = local_checkpoint(spec.language_model)
    tower_dir = local_checkpoint(spec.vision_tower)
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    with torch.random.fork_rng(devices=[]):  # composing leaves the caller's random state as it was
        llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=dtype)
        if getattr(llm, "model", None) is None or llm.get_output_embeddings() is None:
            raise ModelLoadError(f"{spec.language_model}: not a decoder-only causal LM with `model` and an output head")
        vision = CLIPVisionModel.from_pretrained(tower_dir, dtype=dtype)
        image_token_id = add_llava_tokens(tokenizer, llm)
        model = assemble(llm, vision, image_token_id, spec, dtype)
    model.generation_config = llm.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model = model.to(device).eval()
    processor = LlavaProcessor(
        image_processor=vision_image_processor(tower_dir, vision.config),
        tokenizer=tokenizer,
        patch_size=vision.config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, dropped by the 'default' strategy
        image_token=IMAGE_TOKEN,
        chat_template=BIMEDIX2_LLAMA3.jinja,
    )
    tokenizer.chat_template = BIMEDIX2_LLAMA3.jinja
    name = spec.language_model
    return llava_model(
        model, processor, name, SOURCE_FORMAT, options, template_holder=processor, default_template=BIMEDIX2_LLAMA3
    )


def add_llava_tokens(tokenizer: PreTrainedTokenizerBase, llm: PreTrainedModel) -> int:
    """Add `<pad>` (when missing) and `<image>`, grow the embeddings with mean rows; the `<image>` id."""
    embeddings = llm.get_input_embeddings().weight
    before = getattr(embeddings, "ds_shape", embeddings.shape)[0]  # ZeRO-3 partitioned: shape is empty
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if len(tokenizer) > before:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        pair = (llm.get_input_embeddings().weight, llm.get_output_embeddings().weight)
        weights = list({id(w): w for w in pair}.values())  # one matrix when tied
        with gathered(weights), torch.no_grad():
            for weight in weights:
                weight[before:] = weight[:before].float().mean(dim=0, keepdim=True).to(weight.dtype)
    llm.config.pad_token_id = tokenizer.pad_token_id
    return int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))


def assemble(
    llm: PreTrainedModel, vision: CLIPVisionModel, image_token_id: int, spec: ComposeSpec, dtype: torch.dtype
) -> LlavaForConditionalGeneration:
    """A `LlavaForConditionalGeneration` holding `llm` and `vision` themselves, with a LLaVA-initialised projector."""
    config = LlavaConfig(
        text_config=llm.config,
        vision_config=vision.config,
        image_token_index=image_token_id,
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",  # exact (erf) GELU, as LLaVA's nn.GELU()
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", False)),
    )
    config.image_aspect_ratio = spec.image_aspect_ratio
    # An empty shell: the real parts are put in below, nothing is allocated twice. Under ZeRO-3 the parts
    # were partitioned as they loaded; the shell must not be (set_zero3_state: no second zero.Init).
    from transformers.initialization import no_init_weights
    from transformers.modeling_utils import set_zero3_state

    with torch.device("meta"), no_init_weights(), set_zero3_state():
        model = LlavaForConditionalGeneration(config)
    model.model.language_model = llm.model
    model.lm_head = llm.get_output_embeddings()
    model.model.vision_tower = vision
    model.model.multi_modal_projector = fresh_projector(config, spec.seed).to(dtype)
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise ModelLoadError(f"composing the LLaVA model left {len(left)} tensors unset (first: {left[0]})")
    model.config.dtype = dtype
    return model


def gathered(params: list[torch.nn.Parameter]) -> Any:
    """A context in which ZeRO-3-partitioned `params` are whole and writable (a no-op otherwise)."""
    import contextlib

    if not any(hasattr(p, "ds_id") for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def fresh_projector(config: LlavaConfig, seed: int) -> torch.nn.Module:
    """The `mlp2x_gelu` projector with `nn.Linear`'s default initialisation, drawn from `seed`."""
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    projector = LlavaMultiModalProjector(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in (projector.linear_1, projector.linear_2):
            layer.reset_parameters()
    return projector


def vision_image_processor(tower_dir: Path, vision_config: CLIPVisionConfig) -> CLIPImageProcessorPil:
    """The tower's own preprocessing when it ships one, else CLIP's (resize, centre crop, CLIP mean/std)."""
    if (tower_dir / "preprocessor_config.json").is_file():
        return CLIPImageProcessorPil.from_pretrained(tower_dir)
    size = vision_config.image_size
    return CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def save_composed(loaded: LoadedModel, out: Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write a (composed or trained) Llava model as a transformers checkpoint; refuses to overwrite."""
    if out.exists():
        raise ModelLoadError(f"{out} already exists; choose a new output directory")
    with atomic_directory(out) as tmp:
        loaded.model.save_pretrained(tmp)
        loaded.processor.save_pretrained(tmp)
        if info is not None:
            (tmp / COMPOSE_INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out


def save_tiny_vision_tower(out_dir: Path, *, image_size: int = 56, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny random CLIP vision checkpoint (+ preprocessing), a stand-in for CLIP ViT-L/14-336 in tests and demos."""
    from .tiny import tiny_clip_config, tiny_image_processor

    torch.manual_seed(seed)
    CLIPVisionModel(tiny_clip_config(image_size, hidden=hidden)).eval().save_pretrained(out_dir)
    tiny_image_processor(image_size).save_pretrained(out_dir)
    return out_dir


__all__ = [
    "DEFAULT_VISION_TOWER",
    "ComposeSpec",
    "add_llava_tokens",
    "compose_llava",
    "fresh_projector",
    "gathered",
    "save_composed",
    "save_tiny_vision_tower",
]
