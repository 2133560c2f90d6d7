"""`bimedix2 convert` (a checkpoint to the format its format converts to) and `bimedix2 info`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ..model.formats import ConvertibleFormat, convertible_formats, get_format
from .options import add_model_options, load_options


def _conversions() -> str:
    """'llava-llama -> hf-llava, gguf -> causal-lm' from the registry."""
    pairs = (get_format(name) for name in convertible_formats())
    return ", ".join(f"{fmt.name} -> {fmt.converts_to}" for fmt in pairs if isinstance(fmt, ConvertibleFormat))


def register(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert",
        help=f"convert a checkpoint for other tools ({_conversions()}), e.g. BiMediX2-8B for vLLM",
    )
    convert.add_argument("src", type=Path, help="checkpoint directory or file (e.g. BiMediX2-8B)")
    convert.add_argument("dst", type=Path, help="new output directory")
    convert.add_argument("--vision-tower", default=None, help="CLIP tower path or id (default: mm_vision_tower)")
    convert.add_argument(
        "--dtype", default=None, help="float32, bfloat16, float16 (default: the checkpoint's; float32 from GGUF)"
    )
    convert.set_defaults(func=run_convert)

    info = subparsers.add_parser("info", help="show the model's format, family, template, device and dtype")
    add_model_options(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)


def run_convert(args: argparse.Namespace) -> int:
    from ..model.base import LoadOptions
    from ..model.loader import convert_checkpoint

    options = LoadOptions(vision_tower=args.vision_tower, dtype=args.dtype or "auto")
    out, fmt = convert_checkpoint(args.src, args.dst, options)
    print(f"wrote {get_format(fmt).summary} to {out}")
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
