"""The vision side as a llama.cpp `mmproj` GGUF (arch `clip`, projector type `mlp`, LLaVA-1.5 style).

What llama.cpp's libmtmd reads for a LLaVA-1.5 projector: a CLIP ViT cut after the feature layer
(BiMediX2 uses the second-to-last layer: the last block is dropped and `clip.vision.feature_layer`
names the hidden state to take), no post-layernorm (LLaVA never applies it to that layer), the
patch tokens only (CLS dropped), then `mm.0` -> GELU -> `mm.2`. libmtmd pads images to a square
with the CLIP mean colour before resizing, as BiMediX2's `image_aspect_ratio=pad` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..images import CLIP_MEAN, CLIP_STD
from .common import RESEARCH_ONLY, ExportError, PlannedTensor, float_type, plan_tensor, write_gguf

if TYPE_CHECKING:
    import gguf

    from ..model.base import LoadedModel

FEATURE_LAYER_KEY = "clip.vision.feature_layer"  # read by libmtmd; the gguf package has no constant for it
# The LLaVA-1.5 projector layout libmtmd expects. gguf's own table maps transformers' projector
# to `mm.1`/`mm.2` (another model's layout), so this two-entry mapping is the one written by hand.
PROJECTOR_NAMES = {"linear_1": "mm.0", "linear_2": "mm.2"}


@dataclass(frozen=True)
class MmprojSummary:
    """What the projector GGUF holds."""

    path: Path
    image_size: int
    patch_size: int
    vision_blocks: int
    feature_layer: int
    projector_width: int
    tokens_per_image: int
    tensor_count: int


def feature_hidden_state(layer: int | Sequence[int], num_layers: int) -> int:
    """The hidden-state index (0 = embeddings, n = last block's output) a LLaVA feature layer names."""
    if not isinstance(layer, int):
        if len(layer) != 1:
            raise ExportError(f"vision_feature_layer {list(layer)}: only one feature layer exports to an mlp mmproj")
        layer = layer[0]
    index = layer if layer >= 0 else num_layers + 1 + layer
    if not 1 <= index <= num_layers:
        raise ExportError(f"vision_feature_layer {layer} is outside the {num_layers}-layer vision tower")
    return index


def check_llava(model: Any) -> None:
    """Refuse vision models libmtmd's `mlp` projector cannot run."""
    config = model.config
    if config.vision_config.model_type != "clip_vision_model":
        raise ExportError(f"only CLIP vision towers export to mmproj here, not {config.vision_config.model_type!r}")
    if config.vision_feature_select_strategy != "default":
        raise ExportError(
            f"vision_feature_select_strategy {config.vision_feature_select_strategy!r}: llama.cpp's LLaVA "
            "projector takes patch tokens only ('default')"
        )
    if config.projector_hidden_act != "gelu":
        raise ExportError(f"projector activation {config.projector_hidden_act!r}: mlp2x_gelu needs 'gelu'")
    if config.vision_config.hidden_act not in ("quick_gelu", "gelu"):
        raise ExportError(f"vision activation {config.vision_config.hidden_act!r} has no libmtmd CLIP equivalent")


def add_vision_hparams(writer: gguf.GGUFWriter, loaded: LoadedModel, blocks: int, hidden_state: int) -> None:
    """Write the `clip.*` keys libmtmd reads for a LLaVA-1.5 `mlp` projector."""
    import gguf

    vcfg = loaded.model.config.vision_config
    image_processor = getattr(loaded.processor, "image_processor", None)
    writer.add_clip_has_vision_encoder(True)
    writer.add_bool(gguf.Keys.Clip.HAS_LLAVA_PROJECTOR, True)
    writer.add_clip_projector_type("mlp")
    writer.add_vision_image_size(vcfg.image_size)
    writer.add_vision_patch_size(vcfg.patch_size)
    writer.add_vision_embedding_length(vcfg.hidden_size)
    writer.add_vision_feed_forward_length(vcfg.intermediate_size)
    writer.add_vision_projection_dim(getattr(vcfg, "projection_dim", 0) or 0)
    writer.add_vision_head_count(vcfg.num_attention_heads)
    writer.add_vision_attention_layernorm_eps(vcfg.layer_norm_eps)
    writer.add_vision_block_count(blocks)
    writer.add_array(FEATURE_LAYER_KEY, [hidden_state])
    writer.add_vision_image_mean(list(getattr(image_processor, "image_mean", None) or CLIP_MEAN))
    writer.add_vision_image_std(list(getattr(image_processor, "image_std", None) or CLIP_STD))
    writer.add_vision_use_gelu(vcfg.hidden_act == "gelu")  # CLIP-L/14's quick_gelu is libmtmd's default


def plan_vision_tensors(tower: Any, blocks: int, out_type: str) -> list[PlannedTensor]:
    """CLIP tower tensors up to `blocks` layers, under libmtmd's `v.*` names (post-layernorm left out)."""
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, blocks)
    state = tower.state_dict()
    prefix = "" if any(k.startswith("vision_model.") for k in state) else "vision_model."
    planned = []
    for key, tensor in state.items():
        key = f"vision_tower.{prefix}{key}"
        if ".post_layernorm." in key or key.endswith(".position_ids"):
            continue
        if ".encoder.layers." in key and int(key.split(".encoder.layers.")[1].split(".")[0]) >= blocks:
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"vision tensor {key} has no libmtmd CLIP name")
        # ggml's convolution wants an F16 kernel, so the patch embedding is F16 in every export
        dtype = np.float16 if tensor.ndim == 4 else float_type(tensor.ndim, out_type)
        planned.append(plan_tensor(name, tensor, dtype))
    return planned


def plan_projector_tensors(projector: Any, out_type: str) -> list[PlannedTensor]:
    """The two projector linears as `mm.0` and `mm.2`."""
    planned = []
    for key, tensor in projector.state_dict().items():
        module, _, suffix = key.rpartition(".")
        if module not in PROJECTOR_NAMES:
            raise ExportError(f"projector tensor {key} is not part of an mlp2x_gelu projector")
        planned.append(plan_tensor(f"{PROJECTOR_NAMES[module]}.{suffix}", tensor, float_type(tensor.ndim, out_type)))
    return planned


def write_mmproj_gguf(loaded: LoadedModel, path: Path, out_type: str, *, name: str) -> MmprojSummary:
    """Write the CLIP tower and projector of the vision model `loaded` as an `mmproj` GGUF at `path`."""
    import gguf

    model = loaded.model
    check_llava(model)
    vcfg = model.config.vision_config
    hidden_state = feature_hidden_state(model.config.vision_feature_layer, vcfg.num_hidden_layers)
    blocks = hidden_state  # hidden state k is the output of block k-1: blocks k.. are never run
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ])
    writer.add_name(f"mmproj-{name}")
    writer.add_description(f"BiMediX2 vision encoder + mlp2x_gelu projector for llama.cpp. {RESEARCH_ONLY}")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if out_type == "F32" else gguf.LlamaFileType.MOSTLY_F16)
    add_vision_hparams(writer, loaded, blocks, hidden_state)
    tensors = plan_vision_tensors(model.model.vision_tower, blocks, out_type)
    tensors += plan_projector_tensors(model.model.multi_modal_projector, out_type)
    write_gguf(writer, tensors, desc=f"mmproj {out_type}")
    tokens = (vcfg.image_size // vcfg.patch_size) ** 2
    if loaded.tokens_per_image is not None and loaded.tokens_per_image != tokens:
        raise ExportError(f"the model uses {loaded.tokens_per_image} tokens per image; the mmproj gives {tokens}")
    width = model.model.multi_modal_projector.linear_2.out_features
    return MmprojSummary(path, vcfg.image_size, vcfg.patch_size, blocks, hidden_state, width, tokens, len(tensors))
