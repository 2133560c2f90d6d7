"""Training from the base models: stage 1 composes Llama + CLIP + a fresh projector; stage 2, merge, ask."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bimedix2.model.loader import load_model
from bimedix2.train.recipes import run_stage1, run_stage2

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import REPO, composed_config, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def stage1_run(tiny_parts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bimedix2 train stage1 configs/train/stage1-tiny.yaml` on the tiny parts, through the CLI."""
    from bimedix2.cli import main

    llm, tower = tiny_parts
    out = tmp_path_factory.mktemp("stage1") / "run"
    data = REPO / "tests/unit/train/fixtures/captions.json"
    args = [
        f"model.language_model={llm}",
        f"model.vision_tower={tower}",
        f"train.output_dir={out}",
        f"data.train=[{data}]",
    ]
    assert main(["train", "stage1", str(REPO / "configs/train/stage1-tiny.yaml"), *args, "--no-progress"]) == 0
    return out


def test_stage1_writes_the_projector_and_a_full_checkpoint(stage1_run: Path, tiny_parts: tuple[Path, Path]) -> None:
    from bimedix2.model.compose import ComposeSpec, compose_llava
    from bimedix2.model.loader import LoadOptions

    final = stage1_run / "final"
    projector = load_file(str(final / "projector.safetensors"))
    assert set(projector) == {"linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"}
    trained = load_model(str(final / "model"), LoadOptions(device="cpu", dtype="float32"))
    assert trained.template.name == "bimedix2-llama3" and trained.tokenizer.pad_token == "<pad>"
    assert trained.model.config.image_aspect_ratio == "pad"  # the inference setting, whatever stage 1 trained with
    fresh = compose_llava(ComposeSpec(str(tiny_parts[0]), str(tiny_parts[1]), seed=42), LoadOptions(device="cpu"))
    before, after = fresh.model.state_dict(), trained.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("model.multi_modal_projector.") for k in moved)  # only the projector trained
    for key, value in projector.items():
        torch.testing.assert_close(after[f"model.multi_modal_projector.{key}"], value)
    assert "image_aspect_ratio: square" in (stage1_run / "config.yaml").read_text()  # resolved config saved


def test_stage2_from_the_stage1_checkpoint_equals_stage2_composed_again(
    stage1_run: Path, tiny_parts: tuple[Path, Path], tmp_path: Path
) -> None:
    """The released route (Llama + CLIP + --pretrain_mm_mlp_adapter) and the checkpoint route train alike."""
    steps = ("train.max_steps=2", "train.save_steps=100")
    from_checkpoint = tiny_config("stage2-tiny.yaml", stage1_run / "final" / "model", tmp_path / "a", *steps)
    composed = composed_config(
        "stage2-tiny.yaml",
        tiny_parts,
        tmp_path / "b",
        f"model.projector_weights={stage1_run / 'final' / 'projector.safetensors'}",
        *steps,
    )
    a, b = run_stage2(from_checkpoint, show_progress=False), run_stage2(composed, show_progress=False)
    for name in ("adapter_model.safetensors", "projector.safetensors"):
        left, right = load_file(str(a.final_dir / name)), load_file(str(b.final_dir / name))
        assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_merged_composed_run_answers_with_an_image(
    stage1_run: Path, tiny_parts: tuple[Path, Path], tmp_path: Path, png_path: Path
) -> None:
    from bimedix2.engine import Engine
    from bimedix2.train.merge import merge
    from bimedix2.types import GenParams, ImageRef, Message

    cfg = composed_config(
        "stage2-tiny.yaml",
        tiny_parts,
        tmp_path / "run",
        f"model.projector_weights={stage1_run / 'final' / 'projector.safetensors'}",
        "train.max_steps=1",
    )
    run_stage2(cfg, show_progress=False)
    out = merge(tmp_path / "run", tmp_path / "merged")
    engine = Engine(load_model(str(out)))
    reply = engine.generate(
        [Message("user", "What is seen?", (ImageRef(png_path),))], GenParams(max_new_tokens=4, temperature=0.0)
    )
    assert reply.prompt_tokens > 16 and reply.completion_tokens >= 1  # the 16 image tokens went in


def test_resume_skips_a_checkpoint_torn_by_a_kill(tiny_llava_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "torn"
    cfg = tiny_config("stage2-tiny.yaml", tiny_llava_path, out, "train.max_steps=6", "train.save_steps=3")
    run_stage2(cfg, show_progress=False)
    shutil.rmtree(out / "final")
    (out / "checkpoint-6" / "trainer_state.json").unlink()  # killed while writing checkpoint-6
    result = run_stage2(cfg, resume=True, show_progress=False)
    assert result.global_step == 6 and (out / "final" / "adapter_model.safetensors").is_file()


def test_stage1_keeps_working_from_an_existing_llava(tiny_llava_path: Path, tmp_path: Path) -> None:
    cfg = tiny_config("stage1-tiny.yaml", tiny_llava_path, tmp_path / "s1", "train.max_steps=1")
    result = run_stage1(cfg, show_progress=False)
    assert load_model(str(result.final_dir / "model")).has_vision
