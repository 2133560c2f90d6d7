"""`bimedix2 train stage1|stage2 CONFIG [FIELD=VALUE ...]`, `bimedix2 merge RUN OUT` and `bimedix2 compose LM OUT`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..types import RESEARCH_NOTICE

OVERRIDE_HELP = "dotted config overrides, e.g. train.lr=1e-4 lora.r=16 data.max_length=4096"


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train BiMediX2: stage1 (projector) or stage2 (LoRA + projector)")
    stages = train.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage, text in (
        ("stage1", "align the projector on image-caption pairs (vision tower and LLM frozen)"),
        ("stage2", "LoRA instruction tuning of the LLM, projector fine-tuned with its own lr"),
    ):
        parser = stages.add_parser(stage, help=text, description=f"{text}. {RESEARCH_NOTICE}")
        parser.add_argument("config", type=Path, help="YAML recipe (see configs/train/)")
        parser.add_argument("overrides", nargs="*", metavar="FIELD=VALUE", help=OVERRIDE_HELP)
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue from the last checkpoint in train.output_dir (same data order, optimizer, schedule)",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar (metrics.jsonl is still written)"
        )
        parser.set_defaults(func=run_train, stage_name=stage)

    merge = subparsers.add_parser(
        "merge",
        help="fold a trained adapter and projector into a full transformers checkpoint (loads with ask --model)",
    )
    merge.add_argument("run", type=Path, help="a training run directory, its final/ or a checkpoint-N directory")
    merge.add_argument("out", type=Path, help="new directory for the merged checkpoint")
    merge.add_argument("--base", default=None, help="base model (default: model.path from the run's config.yaml)")
    merge.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="dtype of the merged weights (default: float32)",
    )
    merge.set_defaults(func=run_merge)

    compose = subparsers.add_parser(
        "compose",
        help="build an untrained LLaVA checkpoint from a Llama-family LM + a CLIP tower + a fresh projector",
        description="What `train stage1` with model.language_model does in memory, written out once (e.g. to "
        "train with ZeRO-3 partition-on-load or QLoRA from it).",
    )
    compose.add_argument("language_model", help="Llama-family causal LM: hub id or local directory")
    compose.add_argument("out", type=Path, help="new directory for the composed checkpoint")
    compose.add_argument(
        "--vision-tower", default=None, help="CLIP checkpoint (default: openai/clip-vit-large-patch14-336)"
    )
    compose.add_argument("--seed", type=int, default=42, help="seed of the projector's initial weights (default 42)")
    compose.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="weights dtype (default float32)"
    )
    compose.set_defaults(func=run_compose)


def run_train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..train.config import TrainConfig
    from ..train.recipes import run_stage1, run_stage2

    cfg = load_config(args.config, TrainConfig, args.overrides)
    runner = run_stage1 if args.stage_name == "stage1" else run_stage2
    result = runner(cfg, resume=args.resume, show_progress=not args.no_progress)
    print(f"trained {result.global_step} steps, mean loss {result.train_loss:.4f} ({result.trainable})")
    print(
        f"records: {result.encode.kept} used, {result.encode.dropped_too_long} dropped as too long, "
        f"{result.encode.truncated} truncated at turn boundaries"
    )
    print(
        f"outputs: {result.final_dir} (config: {result.output_dir / 'config.yaml'}, "
        f"metrics: {result.output_dir / 'metrics.jsonl'})"
    )
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """End a multi-process run's process group before exit, every process together: left to
    interpreter shutdown, gloo's threads can abort a finished process (`terminate called without
    an active exception`, seen once under DeepSpeed ZeRO-3 on CPU)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_merge(args: argparse.Namespace) -> int:
    from ..train.merge import merge

    out = merge(args.run, args.out, base=args.base, dtype=args.dtype)
    print(f'merged checkpoint written to {out}; try: bimedix2 ask --model {out} "..."')
    return 0


def run_compose(args: argparse.Namespace) -> int:
    from ..model.compose import DEFAULT_VISION_TOWER, ComposeSpec, compose_llava, save_composed
    from ..model.loader import LoadOptions

    spec = ComposeSpec(args.language_model, args.vision_tower or DEFAULT_VISION_TOWER, seed=args.seed)
    loaded = compose_llava(spec, LoadOptions(device="cpu", dtype=args.dtype))
    info = {"language_model": spec.language_model, "vision_tower": spec.vision_tower, "seed": spec.seed}
    out = save_composed(loaded, args.out, info=info)
    print(f"composed {loaded.info.parameters:,} parameters ({loaded.tokens_per_image} image tokens) into {out}")
    return 0
