"""One bf16 stage-2 step of a tiny model on a CUDA GPU (skipped without one).

Also runnable as a script (`python tests/unit/train/test_train_gpu.py`), printing the figures
(loss, step time, peak GPU memory) as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def one_bf16_step(workdir: Path) -> dict[str, object]:
    import torch

    from bimedix2.config import load_config
    from bimedix2.model.tiny import save_tiny_llava
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.recipes import run_stage2

    model_dir = save_tiny_llava(workdir / "tiny")
    cfg = load_config(
        Path(__file__).parents[3] / "configs/train/stage2-tiny.yaml",
        TrainConfig,
        [
            f"model.path={model_dir}",
            f"train.output_dir={workdir / 'run'}",
            f"data.train=[{FIXTURES / 'chat.jsonl'}]",
            "train.device=cuda",
            "train.precision=bf16",
            "train.max_steps=1",
            "train.gradient_accumulation_steps=1",
            "train.per_device_batch_size=6",
            "train.gradient_checkpointing=true",
            "train.save_steps=1",
        ],
    )
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run_stage2(cfg, show_progress=False)
    wall = time.perf_counter() - start
    lines = [json.loads(x) for x in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    step = next(x for x in lines if "loss" in x)
    summary = next(x for x in lines if "train_runtime" in x)
    return {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "steps": result.global_step,
        "loss": step["loss"],
        "grad_norm": step.get("grad_norm"),
        "tokens_in_step": step["tokens"],
        "train_runtime_s": summary["train_runtime"],
        "wall_including_load_and_tokenize_s": round(wall, 3),
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 2),
        "trainable": result.trainable,
    }


@pytest.mark.gpu
def test_one_bf16_stage2_step_on_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    figures = one_bf16_step(tmp_path)
    assert figures["steps"] == 1
    assert 0 < float(figures["loss"]) < 20  # type: ignore[arg-type]
    assert (tmp_path / "run" / "final" / "adapter_config.json").is_file()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(one_bf16_step(Path(tmp)), indent=2))
    sys.exit(0)
