"""The checkpoint-format registry: names, detection order, and the interface a format supplies."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from ...errors import ModelLoadError
from ..base import LoadedModel, LoadOptions, read_config


@runtime_checkable
class CheckpointFormat(Protocol):
    """One checkpoint layout the toolkit can load.

    `detect` looks at the files only (config.json's model_type, a file's type), never at how the
    path is spelled; it must be cheap and must not raise for checkpoints of other formats.
    `quantizations` lists the `LoadOptions.quantization` values `load` accepts.
    """

    name: str
    summary: str
    quantizations: tuple[str, ...]

    def detect(self, path: Path) -> bool:
        """Whether `path` (a directory or a file) holds a checkpoint of this format."""
        ...

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        """Load the checkpoint at `path` ready for chat."""
        ...


@runtime_checkable
class ConvertibleFormat(CheckpointFormat, Protocol):
    """A format that can also write itself out as another registered format (`converts_to`)."""

    converts_to: str

    def convert(self, src: Path, dst: Path, options: LoadOptions) -> Path:
        """Write the checkpoint at `src` to the new directory `dst` in the `converts_to` format."""
        ...


_FORMATS: dict[str, CheckpointFormat] = {}


def register_format(fmt: CheckpointFormat, *, before: str | None = None) -> CheckpointFormat:
    """Add a format; detection tries formats in registration order (`before` inserts ahead of one)."""
    if fmt.name == "auto" or fmt.name in _FORMATS:
        raise ValueError(f"checkpoint format name {fmt.name!r} is reserved or already registered")
    if before is not None and before not in _FORMATS:
        raise ValueError(f"cannot register {fmt.name!r} before {before!r}: no such format")
    items = list(_FORMATS.items())
    index = [name for name, _ in items].index(before) if before is not None else len(items)
    items.insert(index, (fmt.name, fmt))
    _FORMATS.clear()
    _FORMATS.update(items)
    return fmt


def unregister_format(name: str) -> None:
    """Remove a registered format (plugins and tests that register temporary ones)."""
    get_format(name)
    del _FORMATS[name]


def format_names() -> tuple[str, ...]:
    """Registered format names, in detection order."""
    return tuple(_FORMATS)


def get_format(name: str) -> CheckpointFormat:
    """The format registered as `name`; an unknown name lists the available ones."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise ModelLoadError(f"unknown checkpoint format {name!r}. Available: {', '.join(format_names())}") from None


def convertible_formats() -> tuple[str, ...]:
    """Names of the formats that supply `convert`."""
    return tuple(name for name, fmt in _FORMATS.items() if isinstance(fmt, ConvertibleFormat))


def detect_format(path: Path) -> str:
    """The name of the first registered format (in detection order) whose `detect` accepts `path`."""
    for name, fmt in _FORMATS.items():
        if fmt.detect(path):
            return name
    if path.is_file():
        raise ModelLoadError(f"{path}: a model must be a checkpoint directory or a .gguf file")
    model_type = read_config(path).get("model_type")  # raises for a missing or broken config.json
    if model_type is None:
        raise ModelLoadError(f"{path}/config.json has no model_type; pass the format explicitly")
    raise ModelLoadError(
        f"{path}: no checkpoint format recognises model_type {model_type!r}. Available: {', '.join(format_names())}"
    )
