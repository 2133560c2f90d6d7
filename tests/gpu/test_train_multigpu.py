"""Sharded stage 2 on GPUs: FSDP (which accelerate runs only on GPUs) and DeepSpeed ZeRO-2/3 in bf16,
launched with `accelerate launch` over every visible GPU (at most 2), compared with a one-process
run of the same global batch. bf16 rounding differs between sharded and unsharded reductions, so
the tolerance is bf16-sized (the fp32 CPU runs in tests/integration/test_train_distributed.py check 1e-5).

Skipped without CUDA. What it runs, by hand (one node, N GPUs):
  accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes N \\
    -m bimedix2.cli train stage2 configs/train/stage2-tiny.yaml model.path=TINY_LLAVA train.device=cuda \\
    train.precision=bf16 lora.dropout=0
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit" / "train"))
from train_helpers import write_mixed_records  # noqa: E402


def overrides(model: Path, data: Path, out: Path, batch: int, accumulation: int) -> list[str]:
    return [
        f"model.path={model}",
        f"data.train=[{data}]",
        f"train.output_dir={out}",
        "train.max_steps=6",
        "train.device=cuda",
        "train.precision=bf16",
        "lora.dropout=0",
        "data.group_by_modality_length=true",
        f"train.per_device_batch_size={batch}",
        f"train.gradient_accumulation_steps={accumulation}",
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixed_records(tmp_path_factory.mktemp("data") / "images.jsonl", images=8, texts=0)


@pytest.fixture(scope="module")
def single(tiny_llava_path: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.recipes import run_stage2

    out = tmp_path_factory.mktemp("single") / "run"
    cfg = load_config(REPO / "configs/train/stage2-tiny.yaml", TrainConfig, overrides(tiny_llava_path, data, out, 4, 1))
    run_stage2(cfg, show_progress=False)
    return out


@pytest.mark.parametrize("config", ["fsdp.yaml", "zero2.yaml", "zero3.yaml"])
def test_sharded_gpu_run_matches_one_process(
    config: str, tiny_llava_path: Path, data: Path, single: Path, tmp_path: Path
) -> None:
    if config != "fsdp.yaml" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("pip install deepspeed")
    gpus = min(2, torch.cuda.device_count())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "run"
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--config_file",
        str(REPO / "configs/accelerate" / config),
        "--num_processes",
        str(gpus),
        "--main_process_port",
        str(port),
        "-m",
        "bimedix2.cli",
        "train",
        "stage2",
        str(REPO / "configs/train/stage2-tiny.yaml"),
        *overrides(tiny_llava_path, data, out, 4 // gpus, 1),
        "--no-progress",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("adapter_model.safetensors", "projector.safetensors"):
        got, want = load_file(str(out / "final" / name)), load_file(str(single / "final" / name))
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key].float(), want[key].float(), atol=2e-3, rtol=2e-2)
