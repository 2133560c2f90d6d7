"""The original llava_llama layout loads directly and after `convert`, with the logits of a
transformers Llava model built independently from the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import LlavaConfig, LlavaForConditionalGeneration

from bimedix2.cli import main
from bimedix2.conversation import BIMEDIX2_LLAMA3, render_prompt
from bimedix2.errors import ModelLoadError
from bimedix2.images import pad_to_square
from bimedix2.model.llava_llama import convert_llava_llama, load_llava_llama
from bimedix2.model.loader import load_model
from bimedix2.model.tiny import save_tiny_llava_llama
from bimedix2.types import ImageRef, Message


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("bimedix2-8b-tiny")
    parts = save_tiny_llava_llama(path, seed=3)
    return path, parts


def reference_llava(parts: dict) -> LlavaForConditionalGeneration:
    """A Llava model assembled module by module from the in-memory parts (no key mapping involved)."""
    llm, vision, projector = parts["llm"], parts["vision"], parts["projector"]
    vocab = llm.config.vocab_size
    text_config = type(llm.config)(**{**llm.config.to_dict(), "vocab_size": vocab + 1})
    config = LlavaConfig(
        text_config=text_config,
        vision_config=vision.config,
        image_token_index=vocab,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    ref = LlavaForConditionalGeneration(config).eval()
    state = {k: v.clone() for k, v in llm.model.state_dict().items()}
    embed = state["embed_tokens.weight"]
    state["embed_tokens.weight"] = torch.cat([embed, embed.mean(0, keepdim=True)])
    ref.model.language_model.load_state_dict(state)
    head = llm.lm_head.weight.detach()
    ref.lm_head.weight.data = torch.cat([head, head.mean(0, keepdim=True)])
    ref.model.vision_tower.load_state_dict(vision.state_dict())
    ref.model.multi_modal_projector.linear_1.load_state_dict(projector[0].state_dict())
    ref.model.multi_modal_projector.linear_2.load_state_dict(projector[2].state_dict())
    return ref


def model_inputs(processor, tmp_path: Path) -> dict:  # noqa: ANN001
    rng = np.random.default_rng(1)
    image = pad_to_square(Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)))
    prompt = render_prompt(
        [Message("user", "صف هذه الصورة", (ImageRef(tmp_path / "x.png"),))], BIMEDIX2_LLAMA3, processor.tokenizer
    )
    return dict(processor(text=[prompt], images=[image], return_tensors="pt", add_special_tokens=False))


def logits(model: LlavaForConditionalGeneration, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_direct_load_matches_reference(original, tmp_path: Path) -> None:  # noqa: ANN001
    path, parts = original
    model, processor = load_llava_llama(path)
    inputs = model_inputs(processor, tmp_path)
    n_image = int((inputs["input_ids"] == model.config.image_token_index).sum())
    assert n_image == 16  # (56 / 14)^2 patches, CLS dropped
    diff = (logits(model, inputs) - logits(reference_llava(parts), inputs)).abs().max().item()
    assert diff <= 1e-5


def test_convert_round_trip_matches_reference(original, tmp_path: Path) -> None:  # noqa: ANN001
    path, parts = original
    out = tmp_path / "converted"
    assert main(["convert", str(path), str(out)]) == 0
    loaded = load_model(str(out))
    assert loaded.info.source_format == "hf-llava"
    assert loaded.template.name == "bimedix2-llama3"  # carried by the converted processor
    assert loaded.image_aspect_ratio == "pad"
    inputs = model_inputs(loaded.processor, tmp_path)
    reference = logits(reference_llava(parts), inputs)
    assert (logits(loaded.model, inputs) - reference).abs().max().item() <= 1e-5
    direct = load_model(str(path))
    assert direct.info.source_format == "llava-llama"
    assert (logits(direct.model, inputs) - reference).abs().max().item() <= 1e-5


def test_llava_llama_uses_the_released_template_not_the_tokenizers(original) -> None:  # noqa: ANN001
    path, _ = original
    loaded = load_model(str(path))
    assert loaded.template.name == "bimedix2-llama3"
    own = load_model(str(path), options=__import__("bimedix2").LoadOptions(chat_template="model"))
    assert own.template.name == "model" and own.template.jinja != BIMEDIX2_LLAMA3.jinja


def test_convert_refuses_existing_destination(original, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = original
    (tmp_path / "taken").mkdir()
    with pytest.raises(ModelLoadError, match="already exists"):
        convert_llava_llama(path, tmp_path / "taken")


def copy_checkpoint(src: Path, dst: Path, *, tensors=None, config_update=None) -> Path:  # noqa: ANN001
    import shutil

    shutil.copytree(src, dst)
    if tensors is not None:
        save_file(tensors, str(dst / "model.safetensors"))
    if config_update:
        config = json.loads((dst / "config.json").read_text())
        config.update(config_update)
        (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_unknown_weights_raise_with_their_names(original, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = original
    tensors = load_file(str(path / "model.safetensors"))
    tensors["model.mm_projector.4.weight"] = torch.zeros(2, 2)
    bad = copy_checkpoint(path, tmp_path / "bad", tensors=tensors)
    with pytest.raises(ModelLoadError, match="model.mm_projector.4.weight"):
        load_llava_llama(bad)


def test_missing_layer_weights_raise(original, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = original
    tensors = {k: v for k, v in load_file(str(path / "model.safetensors")).items() if "layers.1." not in k}
    bad = copy_checkpoint(path, tmp_path / "bad", tensors=tensors)
    with pytest.raises(ModelLoadError, match="missing"):
        load_llava_llama(bad)


def test_unsupported_projector_type_raises(original, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = original
    bad = copy_checkpoint(path, tmp_path / "bad", config_update={"mm_projector_type": "linear"})
    with pytest.raises(ModelLoadError, match="mm_projector_type 'linear'"):
        load_llava_llama(bad)


def test_vision_weights_come_from_the_tower_when_absent(original, tmp_path: Path) -> None:  # noqa: ANN001
    path, parts = original
    parts["vision"].save_pretrained(path / "clip-vision-tower")  # a local tower with weights
    tensors = {k: v for k, v in load_file(str(path / "model.safetensors")).items() if "vision_tower" not in k}
    stripped = copy_checkpoint(path, tmp_path / "no-vision", tensors=tensors)
    model, processor = load_llava_llama(stripped)
    inputs = model_inputs(processor, tmp_path)
    assert (logits(model, inputs) - logits(reference_llava(parts), inputs)).abs().max().item() <= 1e-5


def test_known_vision_tower_config_is_built_in(original, tmp_path: Path) -> None:  # noqa: ANN001
    from bimedix2.model.llava_llama import resolve_vision_tower

    tower = resolve_vision_tower({"mm_vision_tower": "openai/clip-vit-large-patch14-336"}, tmp_path)
    assert (tower.config.image_size, tower.config.patch_size, tower.config.hidden_size) == (336, 14, 1024)
    assert (tower.config.image_size // tower.config.patch_size) ** 2 == 576
