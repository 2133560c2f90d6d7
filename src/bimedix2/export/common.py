"""What every GGUF writer here shares: the export error, output types, and a streaming tensor writer.

Tensors are planned first (name, shape, type) and converted one at a time while the file is
written, so exporting an 8B model holds the loaded model plus one tensor, never a second copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BiMediX2Error

if TYPE_CHECKING:
    import gguf
    import torch

# Types the GGUF files are written in directly (by the `gguf` package) ...
WRITE_TYPES: tuple[str, ...] = ("F32", "F16")
# ... and types llama.cpp's own quantizer makes from an F16 intermediate.
QUANTIZED_TYPES: tuple[str, ...] = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0")
QUANT_TYPES: tuple[str, ...] = (*WRITE_TYPES, *QUANTIZED_TYPES)
DEFAULT_QUANT = "Q4_K_M"

RESEARCH_ONLY = "Research use only: not medical advice and not for clinical use."


class ExportError(BiMediX2Error):
    """A checkpoint cannot be exported to GGUF (unsupported architecture, bad option, failed write)."""


def check_quant(quant: str) -> str:
    """`quant` upper-cased if it is one this exporter makes; otherwise an error listing the allowed ones."""
    name = quant.upper()
    if name not in QUANT_TYPES:
        raise ExportError(f"unknown quantization type {quant!r}. Available: {', '.join(QUANT_TYPES)}")
    return name


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of a GGUF file: its name, numpy shape, stored type, and how to produce its data."""

    name: str
    shape: tuple[int, ...]
    dtype: type[np.floating]
    produce: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def plan_tensor(name: str, tensor: torch.Tensor, dtype: type[np.floating], transform: Any = None) -> PlannedTensor:
    """Plan `tensor` (converted lazily, after `transform` if given) as `dtype` under the GGUF `name`."""

    def produce() -> np.ndarray:
        value = tensor.detach()
        if transform is not None:
            value = transform(value)
        return np.ascontiguousarray(value.float().cpu().numpy().astype(dtype, copy=False))

    return PlannedTensor(name, tuple(int(d) for d in tensor.shape), dtype, produce)


def float_type(ndim: int, out_type: str) -> type[np.floating]:
    """llama.cpp's rule: 1-D tensors (norms, biases) stay F32; matrices take the output type."""
    if ndim <= 1 or out_type == "F32":
        return np.float32
    return np.float16


def write_gguf(writer: gguf.GGUFWriter, tensors: Sequence[PlannedTensor], *, desc: str) -> None:
    """Write the header, metadata and `tensors` (produced one at a time, with a progress bar), then close."""
    from tqdm.auto import tqdm

    for t in tensors:
        writer.add_tensor_info(t.name, t.shape, np.dtype(t.dtype), t.nbytes)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total = sum(t.nbytes for t in tensors)
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False) as bar:
            for t in tensors:
                data = t.produce()
                if data.shape != t.shape:
                    raise ExportError(f"tensor {t.name}: planned shape {t.shape}, produced {data.shape}")
                writer.write_tensor_data(data)
                bar.update(t.nbytes)
    finally:
        writer.close()


def safe_name(text: str) -> str:
    """A file-name-safe model name: letters, digits, '.', '-' and '_' kept, anything else '-'."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-.")
    return cleaned or "model"


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, POSIX-style (as Modelfiles and export.json record it)."""
    return path.relative_to(root).as_posix()
