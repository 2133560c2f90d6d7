"""`bimedix2 convert` (a checkpoint to the format its format converts to) and `bimedix2 info`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..model.base import LoadOptions
from ..model.formats import ConvertibleFormat, convertible_formats, get_format
from ..types import GenParams
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

    info = subparsers.add_parser(
        "info",
        help="show how a checkpoint is loaded and prompted: format, template, BOS, stop and image tokens, "
        "vocabulary, decoding defaults",
    )
    add_model_options(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)


def run_convert(args: argparse.Namespace) -> int:
    from ..model.loader import convert_checkpoint

    options = LoadOptions(vision_tower=args.vision_tower, dtype=args.dtype or "auto")
    out, fmt = convert_checkpoint(args.src, args.dst, options)
    print(f"wrote {get_format(fmt).summary} to {out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    report = checkpoint_report(args.model, load_options(args))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    for key, value in _info_rows(report):
        print(f"{key:<15} {value}")
    return 0


def checkpoint_report(model: str | None, options: LoadOptions) -> dict[str, Any]:
    """What `info` shows: the loaded model's `ModelInfo` and prompt facts, and the decoding defaults.

    A checkpoint that cannot load here (e.g. phi3-v) is described from its files by its format's
    `describe`, with the reason it does not load.
    """
    from ..model.formats.common import prompt_facts
    from ..model.loader import load_model

    defaults = GenParams()
    decoding = {"temperature": defaults.temperature, "top_p": defaults.top_p, "max_new_tokens": defaults.max_new_tokens}
    try:
        loaded = load_model(model, options)
    except ModelLoadError as exc:
        described = _describe_unloadable(model, options)
        if described is None:
            raise
        unloaded = {"name": model, "device": None, "dtype": None, "parameters": None}
        return {**unloaded, **described, "loads_here": False, "load_error": str(exc), "decoding": decoding}
    facts = prompt_facts(loaded)
    return {
        **asdict(loaded.info),
        "image_tokens_note": None,
        **facts,
        "loads_here": True,
        "load_error": None,
        "decoding": decoding,
    }


def _describe_unloadable(model: str | None, options: LoadOptions) -> dict[str, Any] | None:
    """The format's description of a checkpoint that did not load, when its format has `describe`."""
    from ..model.loader import checkpoint_format, local_checkpoint

    if model is None:
        return None
    try:
        path = local_checkpoint(model)
        fmt = checkpoint_format(path, options.format)
    except ModelLoadError:
        return None
    describe = getattr(fmt, "describe", None)
    return None if describe is None else {"source_format": fmt.name, **describe(path)}


def _info_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The text form of `checkpoint_report`, one (label, value) per line."""
    rows = [("model", report["name"]), ("format", report["source_format"]), ("family", report["family"])]
    if not report["loads_here"]:
        rows.append(("loads here", f"no: {report['load_error']}"))
    rows += [("chat template", report["chat_template"]), ("BOS", report["bos"])]
    rows.append(("stop tokens", ", ".join(report["stop_tokens"])))
    if report["image_size"]:
        per_image = report["image_tokens"] if report["image_tokens"] is not None else report["image_tokens_note"]
        rows.append(("vision", f"{report['image_size']}px, image tokens per image: {per_image}"))
        rows.append(("aspect ratio", report["image_aspect_ratio"]))
    else:
        rows.append(("vision", "none (text only)"))
    sizes = f"{report['vocab_size']} embedding rows"
    if report["tokenizer_size"] is not None:
        sizes += f" ({report['tokenizer_size']} tokenizer tokens)"
    rows.append(("vocab size", sizes))
    decoding = report["decoding"]
    rows.append(("decoding", ", ".join(f"{k} {v}" for k, v in decoding.items()) + " (released defaults)"))
    if report["loads_here"]:
        rows += [("device", report["device"]), ("dtype", report["dtype"]), ("parameters", f"{report['parameters']:,}")]
    return rows
