"""Stage 1 / stage 2 on tiny random models: what changes, loss, resume, merge, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from bimedix2.errors import TrainingError
from bimedix2.train.recipes import run_stage1, run_stage2

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import REPO, tiny_config  # noqa: E402

CHAT = Path(__file__).parent / "fixtures" / "chat.jsonl"


class Capture(TrainerCallback):
    """Keeps the model and optimizer the Trainer used."""

    def __init__(self) -> None:
        self.model = None
        self.optimizer = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):  # noqa: ANN001, ANN201
        self.optimizer = optimizer

    def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
        self.model = model


class StopAt(TrainerCallback):
    """Simulates an interruption right after step `step` (its checkpoint is written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


def base_params(path: Path) -> dict[str, torch.Tensor]:
    from bimedix2.model.loader import LoadOptions, load_model

    model = load_model(str(path), LoadOptions(device="cpu", dtype="float32")).model
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model: torch.nn.Module, base: dict[str, torch.Tensor]) -> tuple[set[str], set[str]]:
    """(names that changed from the base, names that are new, e.g. LoRA)."""
    moved, new = set(), set()
    for name, param in model.named_parameters():
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        if key not in base:
            new.add(name)
        elif not torch.equal(param.detach().float(), base[key].float()):
            moved.add(name)
    return moved, new


def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "loss" in x]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    return {x["step"]: x["loss"] for x in lines if "loss" in x}


def test_stage1_changes_only_the_projector(tiny_llava_path: Path, tmp_path: Path) -> None:
    capture = Capture()
    cfg = tiny_config("stage1-tiny.yaml", tiny_llava_path, tmp_path / "s1", "train.max_steps=3")
    result = run_stage1(cfg, callbacks=[capture], show_progress=False)
    assert result.global_step == 3
    moved, new = changed(capture.model, base_params(tiny_llava_path))
    assert not new
    assert moved and all(n.startswith("model.multi_modal_projector.") for n in moved)
    assert len(moved) == 4  # linear_1/linear_2 weight and bias
    projector = load_file(str(result.final_dir / "projector.safetensors"))
    assert set(projector) == {"linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"}
    assert (tmp_path / "s1" / "config.yaml").is_file() and (
        tmp_path / "s1" / "checkpoint-3" / "projector.safetensors"
    ).is_file()
    saved = (tmp_path / "s1" / "config.yaml").read_text()
    assert "max_steps: 3" in saved and str(tiny_llava_path) in saved  # the resolved config, overrides applied


def test_stage2_changes_only_lora_and_projector_with_its_own_lr(tiny_llava_path: Path, tmp_path: Path) -> None:
    capture = Capture()
    cfg = tiny_config(
        "stage2-tiny.yaml",
        tiny_llava_path,
        tmp_path / "s2",
        "train.max_steps=2",
        "train.gradient_checkpointing=true",
        "data.group_by_modality_length=false",  # grouped, step 2 would be text-only: no projector gradient
    )
    result = run_stage2(cfg, callbacks=[capture], show_progress=False)
    adapter = load_file(str(result.final_dir / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter), "the adapter file holds LoRA weights only"
    projector = load_file(str(result.final_dir / "projector.safetensors"))
    assert set(projector) == {"linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"}
    moved, new = changed(capture.model, base_params(tiny_llava_path))
    assert moved and all("multi_modal_projector" in n for n in moved), moved
    assert new and all("lora_" in n for n in new)
    assert not any("vision_tower" in n for n in new), "LoRA must not touch CLIP"
    assert any("language_model" in n and "q_proj.lora_A" in n for n in new)
    assert any("lora_B" in n and capture.model.get_parameter(n).abs().sum() > 0 for n in new)  # B starts at 0
    lrs = {g["initial_lr"] for g in capture.optimizer.param_groups}
    assert lrs == {2e-4, 2e-5}
    projector_group = next(g for g in capture.optimizer.param_groups if g["initial_lr"] == 2e-5)
    projector_ids = {id(p) for n, p in capture.model.named_parameters() if "multi_modal_projector" in n}
    assert {id(p) for p in projector_group["params"]} <= projector_ids


def test_stage2_loss_decreases_on_a_fixed_set(tiny_llava_path: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        "stage2-tiny.yaml",
        tiny_llava_path,
        tmp_path / "fit",
        "train.max_steps=8",
        "train.lr=5e-3",
        "train.projector_lr=5e-3",
        "train.per_device_batch_size=6",
        "train.gradient_accumulation_steps=1",
        "train.scheduler=constant_with_warmup",
        "train.warmup_steps=0",
        "lora.dropout=0.0",
        "train.save_steps=100",
    )
    run_stage2(cfg, show_progress=False)
    curve = losses(tmp_path / "fit")
    assert len(curve) == 8
    assert curve[8] < curve[1] - 0.05, curve


def test_text_only_causal_lm_with_packing(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    capture = Capture()
    cfg = tiny_config("bimedix-v1-lora-tiny.yaml", tiny_causal_lm_path, tmp_path / "v1", "train.max_steps=2")
    result = run_stage2(cfg, callbacks=[capture], show_progress=False)
    assert result.global_step == 2
    lora = [n for n, _ in capture.model.named_parameters() if "lora_A" in n]
    assert lora and all(any(f"{p}.lora_A" in n for p in ("q_proj", "k_proj", "v_proj")) for n in lora)
    assert not (result.final_dir / "projector.safetensors").exists()
    report = json.loads((tmp_path / "v1" / "data_report.json").read_text())
    assert report["rows"] < report["kept"]  # packed several samples per row


def test_qlora_on_cpu_is_a_clear_error(tiny_llava_path: Path, tmp_path: Path) -> None:
    cfg = tiny_config("stage2-tiny.yaml", tiny_llava_path, tmp_path / "q", "lora.quantization=4bit")
    with pytest.raises(TrainingError, match="QLoRA\\) needs a CUDA GPU"):
        run_stage2(cfg, show_progress=False)


@pytest.fixture(scope="module")
def full_run(tiny_llava_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 6-step stage-2 run through the CLI (checkpoints at 3 and 6)."""
    from bimedix2.cli import main

    out = tmp_path_factory.mktemp("full") / "run"
    cfg_path = REPO / "configs/train/stage2-tiny.yaml"
    code = main(
        [
            "train",
            "stage2",
            str(cfg_path),
            f"model.path={tiny_llava_path}",
            f"train.output_dir={out}",
            f"data.train=[{CHAT}]",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def test_cli_refuses_to_overwrite_a_run(full_run: Path, tiny_llava_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bimedix2.cli import main

    code = main(
        [
            "train",
            "stage2",
            str(REPO / "configs/train/stage2-tiny.yaml"),
            f"model.path={tiny_llava_path}",
            f"train.output_dir={full_run}",
            f"data.train=[{CHAT}]",
            "--no-progress",
        ]
    )
    assert code == 2 and "pass --resume" in capsys.readouterr().err
    code = main(["train", "stage2", str(REPO / "configs/train/stage2-tiny.yaml"), "train.lrr=1"])
    assert code == 2 and "train.lrr: unknown field" in capsys.readouterr().err


def test_resume_matches_an_uninterrupted_run(full_run: Path, tiny_llava_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    cfg = tiny_config("stage2-tiny.yaml", tiny_llava_path, out)
    first = run_stage2(cfg, callbacks=[StopAt(3)], show_progress=False)
    assert first.global_step == 3 and (out / "checkpoint-3").is_dir()
    resumed = run_stage2(cfg, resume=True, show_progress=False)
    assert resumed.global_step == 6
    for name in ("adapter_model.safetensors", "projector.safetensors"):
        expected = load_file(str(full_run / "final" / name))
        got = load_file(str(out / "final" / name))
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5)
    reference, continued = losses(full_run), losses(out)
    assert sorted(continued) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):  # the curve continues where it stopped
        assert continued[step] == pytest.approx(reference[step], rel=1e-5)
    with pytest.raises(TrainingError, match="'lora' section differs"):
        run_stage2(tiny_config("stage2-tiny.yaml", tiny_llava_path, out, "lora.r=4"), resume=True, show_progress=False)


def test_merged_logits_equal_adapter_logits_and_ask_loads_it(
    full_run: Path, tiny_llava_path: Path, tmp_path: Path, png_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from peft import PeftModel

    from bimedix2.cli import main
    from bimedix2.model.loader import LoadOptions, load_model
    from bimedix2.train.data import NUM_TOKENS_KEY, TrainCollator
    from bimedix2.train.encode import ConversationEncoder, EncoderSettings
    from bimedix2.train.modeling import load_projector
    from bimedix2.train.records import read_records

    out = tmp_path / "merged"
    assert main(["merge", str(full_run), str(out)]) == 0
    merged = load_model(str(out))
    assert merged.template.name == "bimedix2-llama3"

    base = load_model(str(tiny_llava_path), LoadOptions(device="cpu", dtype="float32"))
    load_projector(base.model, full_run / "final" / "projector.safetensors")
    adapted = PeftModel.from_pretrained(base.model, str(full_run / "final")).eval()

    enc = ConversationEncoder(
        base.tokenizer, EncoderSettings(base.template, base.image_token_id, base.tokens_per_image, 2048)
    )
    samples = [enc.encode_chat(r) for r in read_records([CHAT])[:3]]
    batch = TrainCollator(base.tokenizer.pad_token_id, base.processor.image_processor)(
        [{"samples": (s,)} for s in samples]
    )
    batch.pop(NUM_TOKENS_KEY)
    batch.pop("labels")
    with torch.no_grad():
        expected = adapted(**batch).logits
        got = merged.model(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(expected, load_model(str(tiny_llava_path)).model(**batch).logits, atol=1e-4)

    capsys.readouterr()
    code = main(
        [
            "ask",
            "--model",
            str(out),
            "--image",
            str(png_path),
            "--temperature",
            "0",
            "--max-new-tokens",
            "4",
            "What is seen?",
        ]
    )
    assert code == 0
    assert "Research use only" in capsys.readouterr().err
