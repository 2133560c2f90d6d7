"""Multi-process stage 2, really launched: 2 CPU processes (gloo) through `accelerate launch`.

Each run is compared with a one-process run of the same global batch and seed: the final LoRA
adapter and projector must agree within 1e-5. Also: a DDP run killed mid-way and resumed ends at
the same weights; the merged model answers with an image; FSDP2 (sharded on the CPU by the
recipe, which accelerate alone would run as DDP) matches and resumes too; DeepSpeed ZeRO-2 and
ZeRO-3 (when installed) match too. Tiny random Llava (hidden 32), a dozen records, a few dozen steps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit" / "train"))
from train_helpers import write_mixed_records  # noqa: E402

pytestmark = pytest.mark.integration

STEPS = 24  # enough for a kill to land mid-run; each step is milliseconds
SAVE = 4
WEIGHT_FILES = ("adapter_model.safetensors", "projector.safetensors")


def common(model: Path, data: Path, out: Path) -> list[str]:
    """Overrides shared by every run: dropout off (its masks are per process), modality grouping on."""
    return [
        f"model.path={model}",
        f"data.train=[{data}]",
        f"train.output_dir={out}",
        f"train.max_steps={STEPS}",
        f"train.save_steps={SAVE}",
        "lora.dropout=0",
        "data.group_by_modality_length=true",
        "train.logging_steps=4",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_args(accelerate_config: str, overrides: list[str], *extra: str) -> list[str]:
    accelerate = Path(sys.executable).with_name("accelerate")
    return [
        str(accelerate),
        "launch",
        "--config_file",
        str(REPO / "configs" / "accelerate" / accelerate_config),
        "--main_process_port",
        str(free_port()),
        "-m",
        "bimedix2.cli",
        "train",
        "stage2",
        str(REPO / "configs" / "train" / "stage2-tiny.yaml"),
        *overrides,
        "train.per_device_batch_size=1",  # x 2 processes x accumulation 2 = the one-process batch of 4
        "train.gradient_accumulation_steps=2",
        "--no-progress",
        *extra,
    ]


def launch(accelerate_config: str, overrides: list[str], *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        launch_args(accelerate_config, overrides, *extra),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_same_weights(run: Path, reference: Path, atol: float = 1e-5) -> None:
    for name in WEIGHT_FILES:
        got, want = load_file(str(run / "final" / name)), load_file(str(reference / "final" / name))
        assert got.keys() == want.keys()
        worst = max((got[k] - want[k]).abs().max().item() for k in want)
        assert worst <= atol, f"{name}: max difference {worst:.3g} > {atol}"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 image + 4 text-only records: every mega-batch of 4 holds one modality, no partial step."""
    return write_mixed_records(tmp_path_factory.mktemp("data") / "mixed.jsonl", images=8, texts=4)


@pytest.fixture(scope="module")
def single(tiny_llava_path: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-process reference: batch 4, no accumulation, same seed and order."""
    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.recipes import run_stage2

    out = tmp_path_factory.mktemp("single") / "run"
    overrides = [
        *common(tiny_llava_path, data, out),
        "train.per_device_batch_size=4",
        "train.gradient_accumulation_steps=1",
    ]
    run_stage2(load_config(REPO / "configs/train/stage2-tiny.yaml", TrainConfig, overrides), show_progress=False)
    return out


@pytest.fixture(scope="module")
def ddp(tiny_llava_path: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = launch("cpu_ddp.yaml", common(tiny_llava_path, data, out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_ddp_two_processes_equal_one(ddp: Path, single: Path) -> None:
    assert_same_weights(ddp, single)
    assert (ddp / "config.yaml").is_file() and (ddp / f"checkpoint-{STEPS}").is_dir()


def kill_mid_run(accelerate_config: str, overrides: list[str], out: Path) -> None:
    """Launch a run and SIGKILL it (torchrun and every worker) once its first checkpoint is written."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        launch_args(accelerate_config, overrides),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches torchrun and both workers
    )
    try:
        deadline = time.monotonic() + 300
        while not (out / f"checkpoint-{SAVE}" / "trainer_state.json").is_file():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "final").exists(), "the kill came too late: the run had finished"


def test_ddp_killed_mid_run_resumes_to_the_same_weights(
    tiny_llava_path: Path, data: Path, single: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    overrides = common(tiny_llava_path, data, out)
    kill_mid_run("cpu_ddp.yaml", overrides, out)
    done = launch("cpu_ddp.yaml", overrides, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(out, single)


def test_merged_ddp_run_answers_with_an_image(ddp: Path, tmp_path: Path, png_path: Path) -> None:
    from bimedix2.engine import Engine
    from bimedix2.model.loader import load_model
    from bimedix2.train.merge import merge
    from bimedix2.types import GenParams, ImageRef, Message

    engine = Engine(load_model(str(merge(ddp, tmp_path / "merged"))))
    reply = engine.generate(
        [Message("user", "What is seen?", (ImageRef(png_path),))], GenParams(max_new_tokens=4, temperature=0.0)
    )
    assert reply.completion_tokens >= 1 and reply.prompt_tokens > 16


@pytest.fixture(scope="module")
def fsdp(tiny_llava_path: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp") / "run"
    done = launch("cpu_fsdp.yaml", common(tiny_llava_path, data, out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_fsdp_two_processes_equal_one(fsdp: Path, single: Path) -> None:
    assert_same_weights(fsdp, single)
    checkpoint = fsdp / f"checkpoint-{STEPS}"
    assert (fsdp / "config.yaml").is_file() and checkpoint.is_dir()
    # accelerate's FSDP checkpoint files: really sharded, not its DDP fallback (which writes optimizer.pt)
    assert (checkpoint / "pytorch_model_fsdp.bin").is_file() and (checkpoint / "optimizer.bin").is_file()


def test_fsdp_killed_mid_run_resumes_to_the_same_weights(
    tiny_llava_path: Path, data: Path, single: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    kill_mid_run("cpu_fsdp.yaml", common(tiny_llava_path, data, out), out)
    done = launch("cpu_fsdp.yaml", common(tiny_llava_path, data, out), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(out, single)


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image records only: under DeepSpeed a text-only step still moves the projector (Adam momentum on
    zero-filled gradients, where torch's AdamW skips a parameter without a gradient), so the exact
    comparison uses steps that all carry images."""
    return write_mixed_records(tmp_path_factory.mktemp("img") / "images.jsonl", images=8, texts=0)


@pytest.fixture(scope="module")
def single_images(tiny_llava_path: Path, image_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.recipes import run_stage2

    out = tmp_path_factory.mktemp("single-img") / "run"
    overrides = [
        *common(tiny_llava_path, image_data, out),
        "train.max_steps=6",
        "train.per_device_batch_size=4",
        "train.gradient_accumulation_steps=1",
    ]
    run_stage2(load_config(REPO / "configs/train/stage2-tiny.yaml", TrainConfig, overrides), show_progress=False)
    return out


@pytest.mark.parametrize("zero", ["cpu_zero2.yaml", "cpu_zero3.yaml"])
def test_deepspeed_on_cpu_equals_one_process(
    zero: str, tiny_llava_path: Path, image_data: Path, single_images: Path, tmp_path: Path
) -> None:
    pytest.importorskip("deepspeed", reason="pip install deepspeed to run ZeRO on the CPU")
    out = tmp_path / "run"
    done = launch(zero, [*common(tiny_llava_path, image_data, out), "train.max_steps=6"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(out, single_images)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bimedix2.model.compose import save_tiny_vision_tower
    from bimedix2.model.tiny import save_tiny_causal_lm

    root = tmp_path_factory.mktemp("parts")
    return save_tiny_causal_lm(root / "llama"), save_tiny_vision_tower(root / "clip")


def test_zero3_composes_partitioned_parts_as_one_process(
    parts: tuple[Path, Path], image_data: Path, tmp_path: Path
) -> None:
    """The released route under ZeRO-3: Llama + CLIP loaded partitioned, tokens added, projector fresh."""
    pytest.importorskip("deepspeed", reason="pip install deepspeed to run ZeRO on the CPU")
    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.recipes import run_stage2

    llm, tower = parts
    compose = ["model.path=null", "model.format=auto", f"model.language_model={llm}", f"model.vision_tower={tower}"]

    def overrides(out: Path) -> list[str]:
        return [*common(Path("unused"), image_data, out)[1:], *compose, "train.max_steps=4"]

    reference = tmp_path / "single"
    cfg = load_config(
        REPO / "configs/train/stage2-tiny.yaml",
        TrainConfig,
        [*overrides(reference), "train.per_device_batch_size=4", "train.gradient_accumulation_steps=1"],
    )
    run_stage2(cfg, show_progress=False)
    done = launch("cpu_zero3.yaml", overrides(tmp_path / "zero3"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(tmp_path / "zero3", reference)
