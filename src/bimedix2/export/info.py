"""Reading GGUF files back: what a model or projector file says, and whether the two fit together.

For the llama.cpp engine backend: `read_gguf_info` reports a file's architecture, chat template,
vocabulary and widths; `require_chat_template` and `check_mmproj_matches` turn the two ways a
pair of files can be unusable into errors that name the files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GgufInfo:
    """The facts a GGUF file states about itself (None where the file does not say)."""

    path: Path
    arch: str
    name: str | None
    tensor_count: int
    tensor_types: dict[str, int] = field(default_factory=dict)
    chat_template: str | None = None
    vocab_size: int | None = None
    hidden_size: int | None = None
    context_length: int | None = None
    block_count: int | None = None
    tokenizer_model: str | None = None
    tokenizer_pre: str | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    eot_token_id: int | None = None
    add_bos_token: bool | None = None
    projector_type: str | None = None
    projector_width: int | None = None
    vision_hidden_size: int | None = None
    image_size: int | None = None
    patch_size: int | None = None
    feature_layer: tuple[int, ...] | None = None

    @property
    def is_mmproj(self) -> bool:
        """Whether this is a vision projector (arch `clip`) rather than a language model."""
        return self.arch == "clip"

    @property
    def tokens_per_image(self) -> int | None:
        """Image tokens an `mlp` projector gives per image: one per patch (CLS dropped)."""
        if not self.image_size or not self.patch_size:
            return None
        return (self.image_size // self.patch_size) ** 2


def _value(reader: Any, key: str) -> Any:
    """A metadata value as a Python value (str, int, float, bool or list); None when absent."""
    fld = reader.get_field(key)
    return None if fld is None else fld.contents()


def _projector_width(reader: Any) -> int | None:
    """Output width of the LLaVA projector's last linear (`mm.2`, else the highest-numbered `mm.N`)."""
    layers = {}
    for tensor in reader.tensors:
        parts = tensor.name.split(".")
        if len(parts) == 3 and parts[0] == "mm" and parts[1].isdigit() and parts[2] == "weight":
            layers[int(parts[1])] = tensor
    if not layers:
        return None
    # GGUF shapes list the row length first: a [in, out] entry is an out x in matrix
    return int(layers[max(layers)].shape[-1])


def open_reader(path: str | Path) -> Any:
    """A `gguf.GGUFReader` for `path`; a missing file or one that is not GGUF is a `ModelLoadError`."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such GGUF file")
    with path.open("rb") as handle:
        if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ModelLoadError(f"{path}: not a GGUF file (no GGUF magic bytes)")
    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ModelLoadError(f"{path}: unreadable GGUF ({exc})") from None


def read_gguf_info(path: str | Path) -> GgufInfo:
    """What the GGUF at `path` says: architecture, chat template, vocab and hidden sizes, projector width."""
    reader = open_reader(path)
    arch = _value(reader, "general.architecture")
    if not isinstance(arch, str):
        raise ModelLoadError(f"{path}: GGUF without general.architecture")
    tokens = _value(reader, "tokenizer.ggml.tokens")
    types = Counter(t.tensor_type.name for t in reader.tensors)
    common: dict[str, Any] = dict(
        path=Path(path),
        arch=arch,
        name=_value(reader, "general.name"),
        tensor_count=len(reader.tensors),
        tensor_types=dict(sorted(types.items())),
    )
    if arch == "clip":
        layers = _value(reader, "clip.vision.feature_layer")
        return GgufInfo(
            **common,
            projector_type=_value(reader, "clip.projector_type") or _value(reader, "clip.vision.projector_type"),
            projector_width=_projector_width(reader),
            vision_hidden_size=_value(reader, "clip.vision.embedding_length"),
            image_size=_value(reader, "clip.vision.image_size"),
            patch_size=_value(reader, "clip.vision.patch_size"),
            block_count=_value(reader, "clip.vision.block_count"),
            feature_layer=tuple(layers) if layers is not None else None,
        )
    return GgufInfo(
        **common,
        chat_template=_value(reader, "tokenizer.chat_template"),
        vocab_size=_value(reader, f"{arch}.vocab_size") or (len(tokens) if tokens is not None else None),
        hidden_size=_value(reader, f"{arch}.embedding_length"),
        context_length=_value(reader, f"{arch}.context_length"),
        block_count=_value(reader, f"{arch}.block_count"),
        tokenizer_model=_value(reader, "tokenizer.ggml.model"),
        tokenizer_pre=_value(reader, "tokenizer.ggml.pre"),
        bos_token_id=_value(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_value(reader, "tokenizer.ggml.eos_token_id"),
        eot_token_id=_value(reader, "tokenizer.ggml.eot_token_id"),
        add_bos_token=_value(reader, "tokenizer.ggml.add_bos_token"),
    )


def _info(source: str | Path | GgufInfo) -> GgufInfo:
    return source if isinstance(source, GgufInfo) else read_gguf_info(source)


def require_chat_template(model: str | Path | GgufInfo) -> str:
    """The model GGUF's chat template; a clear error when it has none (or is a projector file)."""
    info = _info(model)
    if info.is_mmproj:
        raise ModelLoadError(f"{info.path} is a vision projector (mmproj), not a language model; pass it as --mmproj")
    if not info.chat_template:
        raise ModelLoadError(
            f"{info.path} has no tokenizer.chat_template, so the prompt format is unknown; name a template "
            "explicitly (e.g. --template bimedix2-llama3) or re-export with `bimedix2 export gguf`"
        )
    return info.chat_template


def check_mmproj_matches(model_gguf: str | Path | GgufInfo, mmproj_gguf: str | Path | GgufInfo) -> None:
    """Raise `ModelLoadError` unless `mmproj_gguf` is a projector whose output width is the model's hidden size."""
    model, mmproj = _info(model_gguf), _info(mmproj_gguf)
    if model.is_mmproj:
        raise ModelLoadError(f"{model.path} is a vision projector (mmproj), not a language model")
    if not mmproj.is_mmproj:
        raise ModelLoadError(f"{mmproj.path} is a {mmproj.arch!r} model, not a vision projector (arch 'clip')")
    if mmproj.projector_width is None:
        raise ModelLoadError(f"{mmproj.path} has no mm.* projector tensors")
    if model.hidden_size != mmproj.projector_width:
        raise ModelLoadError(
            f"{mmproj.path.name} projects images to width {mmproj.projector_width}, but {model.path.name} has "
            f"hidden size {model.hidden_size}: the projector belongs to another model; export both from the "
            "same checkpoint"
        )
