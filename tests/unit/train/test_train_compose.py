"""Composing a LLaVA model from a Llama-family LM + a CLIP tower + a fresh projector, as LLaVA does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPVisionModel

from bimedix2.errors import ModelLoadError
from bimedix2.model.base import LoadOptions
from bimedix2.model.compose import PAD_TOKEN, ComposeSpec, compose_llava, save_composed
from bimedix2.model.loader import load_model

CPU = LoadOptions(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def composed(tiny_parts: tuple[Path, Path]):  # noqa: ANN201 - LoadedModel
    llm, tower = tiny_parts
    return compose_llava(ComposeSpec(str(llm), str(tower), seed=7), CPU)


def test_tokens_added_as_llava_does_with_mean_rows(composed, tiny_parts: tuple[Path, Path]) -> None:
    llm_dir, _ = tiny_parts
    base = AutoModelForCausalLM.from_pretrained(llm_dir)
    base_vocab = AutoTokenizer.from_pretrained(llm_dir).__len__()
    tok = composed.tokenizer
    assert tok.pad_token == PAD_TOKEN and tok.convert_tokens_to_ids(PAD_TOKEN) == base_vocab  # added first
    assert composed.image_token_id == base_vocab + 1 and len(tok) == base_vocab + 2
    model = composed.model
    for new, old in (
        (model.get_input_embeddings().weight, base.get_input_embeddings().weight),
        (model.get_output_embeddings().weight, base.get_output_embeddings().weight),
    ):
        assert new.shape[0] == base_vocab + 2
        torch.testing.assert_close(new[:base_vocab], old)  # existing rows untouched
        mean = old.mean(dim=0)
        torch.testing.assert_close(new[base_vocab], mean)  # smart_tokenizer_and_embedding_resize: mean rows
        torch.testing.assert_close(new[base_vocab + 1], mean)


def test_parts_are_the_sources_and_projector_is_nn_linear_default(composed, tiny_parts: tuple[Path, Path]) -> None:
    llm_dir, tower_dir = tiny_parts
    base = AutoModelForCausalLM.from_pretrained(llm_dir)
    for name, tensor in base.model.layers.state_dict().items():
        torch.testing.assert_close(composed.model.model.language_model.layers.state_dict()[name], tensor)
    tower = CLIPVisionModel.from_pretrained(tower_dir)
    for name, tensor in tower.state_dict().items():
        torch.testing.assert_close(composed.model.model.vision_tower.state_dict()[name], tensor)
    projector = composed.model.model.multi_modal_projector
    torch.manual_seed(7)
    first = torch.nn.Linear(projector.linear_1.in_features, projector.linear_1.out_features)
    second = torch.nn.Linear(projector.linear_2.in_features, projector.linear_2.out_features)
    torch.manual_seed(7)  # the same draws, in the same order, as compose's reset_parameters
    first.reset_parameters()
    second.reset_parameters()
    torch.testing.assert_close(projector.linear_1.weight, first.weight)
    torch.testing.assert_close(projector.linear_2.bias, second.bias)
    assert projector.linear_1.weight.abs().max() <= 1 / projector.linear_1.in_features**0.5  # kaiming-uniform bound
    assert isinstance(projector.act, torch.nn.Module) and projector.act.__class__.__name__ == "GELUActivation"


def test_llava_settings_and_the_image_token_contract(composed, png_path: Path) -> None:
    from PIL import Image

    cfg = composed.model.config
    assert (cfg.vision_feature_layer, cfg.vision_feature_select_strategy, cfg.image_aspect_ratio) == (
        -2,
        "default",
        "pad",
    )
    assert composed.template.name == "bimedix2-llama3" and composed.tokens_per_image == 16  # (56 / 14)^2, CLS dropped
    assert composed.processor.num_additional_image_tokens == 1
    inputs = composed.processor(
        images=Image.open(png_path).convert("RGB"), text="<image>\nWhat is seen?", return_tensors="pt"
    )
    assert int((inputs["input_ids"] == composed.image_token_id).sum()) == composed.tokens_per_image
    with torch.no_grad():
        logits = composed.model(**inputs).logits
    assert logits.shape[-1] == len(composed.tokenizer)


def test_compose_keeps_the_callers_random_state(tiny_parts: tuple[Path, Path]) -> None:
    llm, tower = tiny_parts
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    compose_llava(ComposeSpec(str(llm), str(tower)), CPU)
    torch.testing.assert_close(torch.rand(3), expected)


def test_saved_composition_loads_as_a_checkpoint(composed, tmp_path: Path) -> None:
    out = save_composed(composed, tmp_path / "composed", info={"seed": 7})
    loaded = load_model(str(out), CPU)
    assert loaded.info.source_format == "hf-llava" and loaded.template.name == "bimedix2-llama3"
    assert loaded.tokenizer.pad_token == PAD_TOKEN and loaded.image_token_id == composed.image_token_id
    for name, tensor in composed.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)
    with pytest.raises(ModelLoadError, match="already exists"):
        save_composed(composed, out)


def test_four_bit_compose_is_refused(tiny_parts: tuple[Path, Path]) -> None:
    llm, tower = tiny_parts
    with pytest.raises(ModelLoadError, match="write it with `bimedix2 compose` first"):
        compose_llava(ComposeSpec(str(llm), str(tower)), LoadOptions(device="cpu", quantization="4bit"))


def test_cli_compose_writes_a_checkpoint(tiny_parts: tuple[Path, Path], tmp_path: Path) -> None:
    from bimedix2.cli import main

    llm, tower = tiny_parts
    assert main(["compose", str(llm), str(tmp_path / "c"), "--vision-tower", str(tower)]) == 0
    assert (tmp_path / "c" / "bimedix2_compose.json").is_file() and load_model(str(tmp_path / "c")).has_vision
