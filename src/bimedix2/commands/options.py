"""Argument groups shared by several commands (model loading, decoding)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..model.base import LoadOptions
from ..model.formats import format_names
from ..types import GenParams

if TYPE_CHECKING:
    from ..engine import Engine

ENGINES = ("auto", "transformers", "llama-cpp")
_LLAMA_CPP_DEFAULTS = {"format": "auto", "device": "auto", "dtype": "auto", "vision_tower": None}


def key_value_pairs(items: list[str], flag: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """{key: value} of repeated `flag KEY=VALUE` arguments (later ones win); ConfigError naming `form` if malformed."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{flag} expects {form}, got {item!r}")
        out[key] = value
    return out


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and the explicit loading options."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        "-m",
        default=None,
        help="checkpoint directory, .gguf file or Hugging Face repo id "
        "(default: the embedded SmolLM2-135M-Instruct, text only)",
    )
    group.add_argument(
        "--format",
        default="auto",
        choices=("auto", *format_names()),
        help="checkpoint format (default: detected from the checkpoint's files)",
    )
    group.add_argument(
        "--template",
        default="auto",
        help="chat template: auto, model (the checkpoint's own) or bimedix2-llama3 (default: auto)",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    group.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default: auto)")
    group.add_argument("--vision-tower", default=None, help="llava-llama checkpoints: CLIP tower path or id")
    group.add_argument(
        "--image-aspect-ratio",
        default=None,
        choices=("pad", "none"),
        help="pad images to a square (BiMediX2's setting) or not (default: from the checkpoint, else pad)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a checkpoint's own Python code to run (phi3_v checkpoints such as MBZUAI/BiMediX2-4B "
        "ship it); off unless given",
    )


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Decoding options; defaults are BiMediX2's released ones."""
    defaults = GenParams()
    group = parser.add_argument_group("generation")
    group.add_argument(
        "--temperature",
        type=float,
        default=defaults.temperature,
        help=f"0 for greedy decoding (default: {defaults.temperature})",
    )
    group.add_argument("--top-p", type=float, default=defaults.top_p)
    group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    group.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
    group.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    group.add_argument(
        "--steer-language",
        action=argparse.BooleanOptionalAction,
        default=defaults.steer_language,
        help="append 'Answer in English.' / 'أجب باللغة العربية الفصحى.' to the last user turn; the released "
        "BiMediX2 never does and answers in the question's language by itself (default: off)",
    )


def _window(text: str) -> str:
    from ..dicom import parse_window
    from ..errors import ImageError

    try:
        parse_window(text)
    except ImageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _frame(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"frame must be a whole number, got {text[:20]!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"frame must be 0 or more, got {value}")
    return value


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """--window and --frame, applied to every image the command reads."""
    from ..dicom import WINDOW_PRESETS

    group = parser.add_argument_group("images")
    group.add_argument(
        "--window",
        type=_window,
        default=None,
        metavar="PRESET",
        help=f"DICOM greyscale window: {', '.join(WINDOW_PRESETS)} or CENTRE,WIDTH such as 40,400 "
        "(default: the file's own VOI LUT or window, else the full range; a negative centre needs '=': "
        "--window=-600,1500)",
    )
    group.add_argument(
        "--frame",
        type=_frame,
        default=None,
        metavar="N",
        help="0-based frame of a multi-frame DICOM (default: the middle one) or page of an animated GIF / "
        "multi-page TIFF (default: the first)",
    )


def load_options(args: argparse.Namespace) -> LoadOptions:
    """LoadOptions from parsed arguments."""
    return LoadOptions(
        format=args.format,
        chat_template=args.template,
        device=args.device,
        dtype=args.dtype,
        vision_tower=args.vision_tower,
        image_aspect_ratio=args.image_aspect_ratio,
        trust_remote_code=args.trust_remote_code,
    )


def gen_params(args: argparse.Namespace) -> GenParams:
    """GenParams from parsed arguments."""
    if args.max_new_tokens < 1:
        raise SystemExit("bimedix2: error: --max-new-tokens must be at least 1")
    if args.temperature < 0:
        raise SystemExit("bimedix2: error: --temperature must be >= 0")
    return GenParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        stop=tuple(args.stop),
        steer_language=args.steer_language,
    )


def add_engine_options(parser: argparse.ArgumentParser, *, choose_engine: bool = True) -> None:
    """--engine (unless the command has its own), --mmproj and the llama.cpp runtime options."""
    group = parser.add_argument_group("engine")
    if choose_engine:
        group.add_argument(
            "--engine",
            default="auto",
            choices=ENGINES,
            help="auto: llama.cpp for a .gguf --model when llama-cpp-python is installed, else transformers "
            "(default: auto)",
        )
    group.add_argument(
        "--mmproj",
        type=Path,
        default=None,
        metavar="FILE",
        help="llama.cpp: the vision projector GGUF exported beside the model (needed for images)",
    )
    group.add_argument(
        "--ctx-size",
        type=int,
        default=4096,
        metavar="N",
        help="llama.cpp: context tokens per conversation; 0 for the model's trained context (default: 4096)",
    )
    group.add_argument(
        "--threads", type=int, default=0, metavar="N", help="llama.cpp: CPU threads (default: every core)"
    )


def resolve_engine(choice: str, model: str | None) -> str:
    """The backend name for `--engine choice` and `--model model` ("auto" resolved, a misfit refused)."""
    from ..model.llama_cpp import is_gguf
    from ..model.llama_cpp_lib import INSTALL_HINT, llama_cpp_available

    if choice not in ENGINES:
        raise ConfigError(f"unknown engine {choice!r}. Available: {', '.join(ENGINES)}")
    gguf = model is not None and is_gguf(Path(model).expanduser())
    if choice == "llama-cpp":
        if model is not None and not gguf:
            raise ConfigError(
                f"--engine llama-cpp runs a .gguf file; {model} is not one: export it first with "
                f"`bimedix2 export gguf {model} OUT_DIR`, or use --engine transformers"
            )
        if not llama_cpp_available():
            raise ConfigError(f"--engine llama-cpp: {INSTALL_HINT}")
        return "llama-cpp"
    if choice == "auto" and gguf:
        if llama_cpp_available():
            return "llama-cpp"
        _note_once(f"{model}: running the GGUF on transformers (de-quantised, slower); {INSTALL_HINT}")
    return "transformers"


_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"bimedix2: note: {message}", file=sys.stderr)


def build_engine(
    args: argparse.Namespace, *, model: str | None = None, engine: str | None = None, parallel: int = 1
) -> Engine:
    """The Engine the command's options describe; `parallel` is how many conversations it runs together."""
    from ..engine import Engine

    model = model if model is not None else args.model
    backend = resolve_engine(engine or getattr(args, "engine", "auto"), model)
    if backend == "llama-cpp":
        return Engine(_load_llama_cpp(args, model, parallel), backend="llama-cpp")
    if getattr(args, "mmproj", None) is not None:
        raise ConfigError("--mmproj is for --engine llama-cpp (with a .gguf --model)")
    from ..model.loader import load_model

    return Engine(load_model(model, load_options(args)))


def _load_llama_cpp(args: argparse.Namespace, model: str | None, parallel: int):  # noqa: ANN202
    from ..model.llama_cpp import LlamaCppOptions, load_llama_cpp, projector_beside
    from ..model.loader import embedded_default_gguf

    for name, default in _LLAMA_CPP_DEFAULTS.items():
        if getattr(args, name, default) != default:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} does not apply to --engine llama-cpp (the GGUF's own types run on the CPU)")
    if args.ctx_size < 0 or args.threads < 0:
        raise ConfigError("--ctx-size and --threads must be 0 or more")
    options = LlamaCppOptions(context=args.ctx_size, parallel=max(1, parallel), threads=args.threads)
    path = Path(model).expanduser() if model is not None else embedded_default_gguf()
    if args.mmproj is None and (beside := projector_beside(path)) is not None:
        _note_once(f"text only: to send images, pass the vision projector beside the model: --mmproj {beside}")
    return load_llama_cpp(
        path,
        mmproj=args.mmproj,
        template=args.template,
        options=options,
        image_aspect_ratio=args.image_aspect_ratio,
    )
