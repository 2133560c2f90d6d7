"""Stage-2 training throughput and peak memory: plain vs gradient checkpointing vs modality grouping.

Runs the real recipe (`bimedix2.train.recipes.run_stage2`: LoRA r=8 on every LLM linear, the
projector at its own lr) on random Llava models built here, in one run, and prints tokens/s
(real, non-padding tokens) and peak memory per mode, with ratios against `plain`:

- plain:      random order, no gradient checkpointing;
- ckpt:       + gradient checkpointing (the released runs' --gradient_checkpointing True);
- modality:   + LLaVA's modality-length grouping (the released stage 2's --group_by_modality_length True).

Two model shapes: `tiny` (hidden 32, 2 layers) and `1b` (Llama-3.2-1B's shape: hidden 2048,
16 layers, 32/8 heads, MLP 8192, vocabulary 128256; with a small 4-layer CLIP at 112 px, 64
image tokens, to keep CPU runs short). The data is a BiMed-V-shaped mix: 55% short VQA with an
image, 25% long chats (60% with an image), 20% text-only MCQ, lengths scaled to --max-length.

Each (model, mode) runs in its own process, so peak memory is that run's own: peak RSS on the
CPU, `torch.cuda.max_memory_allocated` on a GPU. Speed is measured over the optimizer steps
(model loading and tokenizing excluded, the first step dropped as warm-up), per wall second and
per CPU second of the process; on a shared machine the CPU-second figure is the steadier one.
The tiny runs are repeated (modes interleaved) and the best kept.

    python benchmarks/bench_train.py                      # CPU: tiny and 1b, a few minutes
    python benchmarks/bench_train.py --models tiny --steps 30
    python benchmarks/bench_train.py --device cuda --precision bf16 --max-length 2048 --max-length-1b 2048 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "plain": ["train.gradient_checkpointing=false", "data.group_by_modality_length=false"],
    "ckpt": ["train.gradient_checkpointing=true", "data.group_by_modality_length=false"],
    "modality": ["train.gradient_checkpointing=true", "data.group_by_modality_length=true"],
}
SHAPES = {
    "tiny": {"hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "mlp": 64, "vocab": None, "clip": (32, 2, 56)},
    "1b": {
        "hidden": 2048,
        "layers": 16,
        "heads": 32,
        "kv_heads": 8,
        "mlp": 8192,
        "vocab": 128256,
        "clip": (256, 4, 112),
    },
}
WORDS = "the chest x-ray shows a right lower lobe consolidation with air bronchograms and no effusion".split()


def build_model(shape: str, out: Path) -> Path:
    """A random Llava of `shape` with the tiny tokenizer (vocabulary padded to the shape's size)."""
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from bimedix2.conversation import BIMEDIX2_LLAMA3_TEMPLATE
    from bimedix2.model.tiny import build_tiny_tokenizer, tiny_image_processor, tiny_llama_config

    spec = SHAPES[shape]
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(with_image_token=True, chat_template=BIMEDIX2_LLAMA3_TEMPLATE)
    clip_hidden, clip_layers, size = spec["clip"]
    text = tiny_llama_config(
        spec["vocab"] or len(tokenizer),
        hidden=spec["hidden"],
        layers=spec["layers"],
        intermediate_size=spec["mlp"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"],
        max_position_embeddings=8192,
    )
    vision = CLIPVisionConfig(
        hidden_size=clip_hidden,
        intermediate_size=clip_hidden * 4,
        num_hidden_layers=clip_layers,
        num_attention_heads=4,
        image_size=size,
        patch_size=14,
        hidden_act="quick_gelu",
    )
    config = LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    LlavaForConditionalGeneration(config).save_pretrained(out)
    processor = LlavaProcessor(
        image_processor=tiny_image_processor(size),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=BIMEDIX2_LLAMA3_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def write_data(out: Path, n: int, max_length: int, seed: int) -> Path:
    """BiMed-V-shaped records (text lengths scaled to max_length) and a few PNG images."""
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    images = []
    for i in range(4):
        pixels = np.random.default_rng(i).integers(0, 255, (rng.randint(60, 120), rng.randint(60, 120), 3))
        path = out / f"img{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        images.append(str(path))
    scale = max_length / 4096
    records = []
    for i in range(n):
        kind = rng.choices(["vqa", "chat", "mcq"], weights=[0.55, 0.25, 0.20])[0]
        words = {"vqa": rng.randint(30, 180), "chat": int(rng.triangular(450, 2200, 900)), "mcq": rng.randint(90, 500)}
        count = max(4, int(words[kind] * scale))
        answer = " ".join(rng.choice(WORDS) for _ in range(count))
        record = {
            "id": f"r{i}",
            "conversations": [{"from": "human", "value": "Question?"}, {"from": "gpt", "value": answer}],
        }
        if kind == "vqa" or (kind == "chat" and rng.random() < 0.6):
            record["image"] = rng.choice(images)
            record["conversations"][0]["value"] = "<image>\nWhat is seen?"
        records.append(record)
    path = out / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


class StepClock:
    """Wall and CPU (all threads of this process) seconds of every optimizer step, as a Trainer callback."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
                clock.start = (time.perf_counter(), time.process_time())

            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
                wall, cpu = clock.start
                clock.steps[state.global_step] = (time.perf_counter() - wall, time.process_time() - cpu)

        self.start = (0.0, 0.0)
        self.steps: dict[int, tuple[float, float]] = {}
        self.callback = Callback()


def run_one(args: argparse.Namespace) -> dict[str, float]:
    """One (model, mode) run in this process; figures over every step but the first (warm-up).

    tokens_per_s: real tokens per wall second of the optimizer steps; tokens_per_cpu_s: per CPU
    second of this process (all its threads), which other load on a shared machine disturbs less.
    """
    import torch

    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig
    from bimedix2.train.recipes import run_stage2

    overrides = [
        f"model.path={args.model_dir}",
        f"data.train=[{args.data}]",
        f"data.max_length={args.max_length}",
        f"train.output_dir={args.out}",
        f"train.max_steps={args.steps}",
        f"train.per_device_batch_size={args.batch}",
        "train.gradient_accumulation_steps=1",
        "train.logging_steps=1",
        f"train.save_steps={args.steps + 1}",
        f"train.device={args.device}",
        f"train.precision={args.precision}",
        "data.group_by_length=false",
        *MODES[args.mode],
    ]
    cfg = load_config(Path(__file__).parents[1] / "configs/train/stage2-tiny.yaml", TrainConfig, overrides)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    clock = StepClock()
    run_stage2(cfg, callbacks=[clock.callback], show_progress=False)
    lines = [json.loads(x) for x in (Path(args.out) / "metrics.jsonl").read_text().splitlines()]
    tokens = {x["step"]: x["tokens"] for x in lines if "loss" in x}
    measured = [step for step in sorted(clock.steps) if step > 1 and step in tokens]
    total = sum(tokens[s] for s in measured)
    wall = sum(clock.steps[s][0] for s in measured)
    cpu = sum(clock.steps[s][1] for s in measured)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "tokens_per_s": total / wall if wall else 0.0,
        "tokens_per_cpu_s": total / cpu if cpu else 0.0,
        "peak_mib": peak,
        "tokens": total,
        "step_s": wall / max(len(measured), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "1b"], choices=list(SHAPES))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per tiny run")
    parser.add_argument("--steps-1b", type=int, default=3, help="steps per 1b run (CPU: ~10-20 s each)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length-1b", type=int, default=128, help="cap on the 1b runs' max length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="tiny runs per mode (best kept); 1b runs once")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (1: steadier on a shared machine)")
    for hidden in ("--one", "--mode", "--model-dir", "--data", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results: dict[str, dict[str, dict[str, float]]] = {}
        for shape in args.models:
            model_dir = build_model(shape, root / shape)
            max_length = args.max_length if shape == "tiny" else min(args.max_length, args.max_length_1b)
            data = write_data(root, args.records, max_length, args.seed)
            steps = args.steps if shape == "tiny" else args.steps_1b
            batch = args.batch if shape == "tiny" else 2
            results[shape] = {}
            repeats = args.repeats if shape == "tiny" else 1
            for round_ in range(repeats):  # modes interleaved, best of `repeats`: other load on the machine is noise
                for mode in MODES:
                    row = run_mode(args, shape, mode, model_dir, data, root, steps, batch, max_length, round_)
                    best = results[shape].get(mode)
                    if best is None or row["tokens_per_cpu_s"] > best["tokens_per_cpu_s"]:
                        results[shape][mode] = row
            report(shape, results[shape], steps, batch, max_length, args)


def run_mode(
    args: argparse.Namespace,
    shape: str,
    mode: str,
    model_dir: Path,
    data: Path,
    root: Path,
    steps: int,
    batch: int,
    max_length: int,
    round_: int,
) -> dict[str, float]:
    """One (model, mode) run in a fresh process; its figures."""
    command = [
        sys.executable, __file__, "--one", "1", "--mode", mode, "--model-dir", str(model_dir),
        "--data", str(data), "--out", str(root / f"{shape}-{mode}-{round_}"), "--device", args.device,
        "--precision", args.precision, "--max-length", str(max_length), "--steps", str(steps),
        "--batch", str(batch),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["wall_s"] = time.perf_counter() - start
    print(f"{shape:>4} {mode:>8} (round {round_ + 1}): {row}", file=sys.stderr)
    return row


def report(shape: str, rows: dict[str, dict[str, float]], steps: int, batch: int, max_length: int, args) -> None:  # noqa: ANN001
    base = rows["plain"]

    def ratio(mode: str, key: str) -> str:
        return f"{rows[mode][key] / base[key]:.2f}x" if base[key] else "n/a"

    print(f"\n{shape}: {steps} steps x batch {batch}, max length {max_length}, {args.device} {args.precision}")
    print(
        f"{'mode':>9} | {'tokens/s':>9} | {'ratio':>6} | {'tok/CPU-s':>9} | {'ratio':>6} | "
        f"{'peak MiB':>8} | {'ratio':>6}"
    )
    for mode, row in rows.items():
        print(
            f"{mode:>9} | {row['tokens_per_s']:>9,.0f} | {ratio(mode, 'tokens_per_s'):>6} | "
            f"{row['tokens_per_cpu_s']:>9,.0f} | {ratio(mode, 'tokens_per_cpu_s'):>6} | "
            f"{row['peak_mib']:>8,.0f} | {ratio(mode, 'peak_mib'):>6}"
        )


if __name__ == "__main__":
    main()
