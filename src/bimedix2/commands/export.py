"""`bimedix2 export gguf SRC OUT_DIR`: a checkpoint as GGUF files for llama.cpp, Ollama and LM Studio."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..export.common import DEFAULT_QUANT, QUANT_TYPES
from ..types import RESEARCH_NOTICE
from .derive import add_dataclass_options, dataclass_from_args, opt


@dataclass(frozen=True)
class ExportGgufOptions:
    """The options of `bimedix2 export gguf` (flags derived from these fields)."""

    quant: str = field(
        default=DEFAULT_QUANT,
        metadata=opt(f"GGUF type of the language model: {', '.join(QUANT_TYPES)}; the mmproj stays F16 (F32 with F32)"),
    )
    name: str | None = field(default=None, metadata=opt("model name in file names; none: SRC's directory name"))
    publisher: str = field(default="bimedix2", metadata=opt("publisher folder of the LM Studio layout"))
    force: bool = field(default=False, metadata=opt("replace a non-empty OUT_DIR (kept if the export fails)"))
    template: str = field(
        default="auto",
        metadata=opt("chat template stored in the GGUF: auto, model (the checkpoint's own) or bimedix2-llama3"),
    )
    format: str = field(default="auto", metadata=opt("checkpoint format of SRC; auto: detected from its files"))
    dtype: str = field(
        default="auto",
        metadata=opt("dtype SRC is loaded in (auto: float32); bfloat16 halves the RAM an 8B export needs"),
    )
    vision_tower: str | None = field(default=None, metadata=opt("llava-llama checkpoints: CLIP tower path or id"))
    threads: int = field(default=0, metadata=opt("quantizer threads; 0: all cores"))


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export a checkpoint for other runtimes (gguf: llama.cpp, Ollama)")
    sub = export.add_subparsers(dest="export_command", required=True, metavar="TARGET")
    gguf = sub.add_parser(
        "gguf",
        help="language model (+ vision mmproj) as GGUF, with an Ollama Modelfile and an LM Studio folder",
        description=f"Write SRC as GGUF files in the new directory OUT_DIR. {RESEARCH_NOTICE}",
    )
    gguf.add_argument("src", help="checkpoint directory, Hugging Face repo id or .gguf file")
    gguf.add_argument("out_dir", type=Path, help="new output directory")
    add_dataclass_options(gguf.add_argument_group("export"), ExportGgufOptions)
    gguf.set_defaults(func=run_export_gguf)


def run_export_gguf(args: argparse.Namespace) -> int:
    from ..export import export_gguf
    from ..model.base import LoadOptions

    options = dataclass_from_args(ExportGgufOptions, args)
    load = LoadOptions(
        format=options.format, chat_template=options.template, dtype=options.dtype, vision_tower=options.vision_tower
    )
    result = export_gguf(
        args.src,
        args.out_dir,
        options.quant,
        name=options.name,
        publisher=options.publisher,
        force=options.force,
        load_options=load,
        threads=options.threads,
    )
    print(f"wrote {result.model_gguf}")
    if result.mmproj_gguf is not None:
        print(f"wrote {result.mmproj_gguf}")
    for fallback in (result.config.get("quantization") or {}).get("fallbacks", []):
        print(
            f"note: {fallback['tensor']} {fallback['shape']} stored as {fallback['stored_as']}: {fallback['reason']}",
            file=sys.stderr,
        )
    print(f"wrote {result.modelfile}, {result.readme} and {result.out_dir / 'export.json'}")
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    return 0
