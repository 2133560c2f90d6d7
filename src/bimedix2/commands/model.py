"""`bimedix2 convert` (llava_llama -> transformers Llava) and `bimedix2 info`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from .options import add_model_options, load_options


def register(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert", help="convert an original LLaVA (llava_llama) checkpoint to a transformers Llava checkpoint"
    )
    convert.add_argument("src", type=Path, help="llava_llama checkpoint directory (e.g. BiMediX2-8B)")
    convert.add_argument("dst", type=Path, help="new output directory")
    convert.add_argument("--vision-tower", default=None, help="CLIP tower path or id (default: mm_vision_tower)")
    convert.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: the checkpoint's)")
    convert.set_defaults(func=run_convert)

    info = subparsers.add_parser("info", help="show the model's format, family, template, device and dtype")
    add_model_options(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)


def run_convert(args: argparse.Namespace) -> int:
    import torch

    from ..model.llava_llama import convert_llava_llama

    dtype = getattr(torch, args.dtype) if args.dtype else None
    out = convert_llava_llama(args.src, args.dst, vision_tower=args.vision_tower, dtype=dtype)
    print(f"wrote transformers Llava checkpoint to {out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..model.loader import load_model

    info = load_model(args.model, load_options(args)).info
    if args.json:
        print(json.dumps(asdict(info), indent=2, ensure_ascii=False))
        return 0
    rows = [
        ("model", info.name),
        ("format", info.source_format),
        ("family", info.family),
        ("chat template", info.chat_template),
        ("device", info.device),
        ("dtype", info.dtype),
        ("parameters", f"{info.parameters:,}"),
        (
            "vision",
            f"{info.image_size}px, {info.image_tokens} tokens per image" if info.image_size else "none (text only)",
        ),
    ]
    for key, value in rows:
        print(f"{key:<14} {value}")
    return 0
