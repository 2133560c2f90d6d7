"""Quantization through llama.cpp's own quantizer (`llama_model_quantize` in llama-cpp-python).

llama.cpp keeps some tensors at other types on purpose (Q4_K_M raises a few to Q6_K) and falls
back to another type for tensors whose rows do not split into its blocks (256 values for the
K-quants, 32 for Q8_0/Q4_0): a tiny model's 32-wide rows cannot be Q4_K. Neither is an error; the
report below reads the quantized file back and names every tensor that is not in the target family.
"""

from __future__ import annotations

import ctypes
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import QUANTIZED_TYPES, ExportError


@dataclass(frozen=True)
class Fallback:
    """A matrix llama.cpp stored at another type than the target, and why."""

    tensor: str
    shape: tuple[int, ...]
    stored_as: str
    reason: str


@dataclass(frozen=True)
class QuantReport:
    """What llama.cpp's quantizer made: tensor counts per type, and matrices outside the target family."""

    quant: str
    tensor_types: dict[str, int]
    fallbacks: tuple[Fallback, ...]


def block_size(quant: str) -> int:
    """Values per quantization block: 256 for K-quants, 32 for the legacy ones (Q8_0, Q4_0)."""
    return 256 if "_K" in quant else 32


def import_llama_cpp() -> Any:
    """llama-cpp-python, or an error that says how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(
            "quantized GGUF export needs llama-cpp-python (llama.cpp's quantizer): pip install -e '.[cpu]', "
            "or export with --quant F16"
        ) from None
    return llama_cpp


def llama_ftype(quant: str) -> int:
    """llama.cpp's file-type number for `quant`; an error listing the allowed ones when it has none."""
    llama_cpp = import_llama_cpp()
    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}", None) if quant in QUANTIZED_TYPES else None
    if value is None:
        raise ExportError(f"llama.cpp does not quantize to {quant!r}. Available: {', '.join(QUANTIZED_TYPES)}")
    return int(value)


@contextmanager
def _llama_log(verbose: bool) -> Iterator[None]:
    """llama.cpp's log (forwarded by llama-cpp-python under this logger's level) quiet unless `verbose`."""
    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def llama_cpp_reads(path: Path) -> str:
    """Have llama.cpp parse the GGUF's metadata and vocabulary (no weights); 'skipped' without llama-cpp-python.

    Catches what the `gguf` writer cannot: e.g. a tokenizer llama.cpp refuses. Extra buffer types
    (weight repacking) stay off: they are not needed to read a file and crash on some CPUs.
    """
    try:
        import llama_cpp
    except ImportError:
        return "skipped: llama-cpp-python is not installed"
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    params.use_extra_bufts = False
    with _llama_log(False):
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ExportError(f"llama.cpp cannot read the exported {path.name} (run with -v for its log)")
    llama_cpp.llama_model_free(model)
    return f"read by llama.cpp (llama-cpp-python {getattr(llama_cpp, '__version__', '?')})"


def quantize_gguf(src: Path, dst: Path, quant: str, *, threads: int = 0, verbose: bool = False) -> QuantReport:
    """Quantize the F16/F32 GGUF `src` to `quant` at `dst` with llama.cpp, and report the tensor types."""
    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_ftype(quant)
    params.nthread = threads
    with _llama_log(verbose):
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0 or not dst.is_file():
        raise ExportError(f"llama.cpp could not quantize {src.name} to {quant} (status {status})")
    return quant_report(dst, quant)


def _in_family(stored: str, quant: str) -> bool:
    if "_K" in quant:
        return stored.endswith("_K")
    return stored in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1") and (quant != "Q8_0" or stored == "Q8_0")


def quant_report(path: Path, quant: str) -> QuantReport:
    """Counts per tensor type in the quantized file, and every matrix llama.cpp kept out of `quant`'s family."""
    import gguf

    reader = gguf.GGUFReader(path)
    counts = Counter(t.tensor_type.name for t in reader.tensors)
    block = block_size(quant)
    fallbacks = []
    for tensor in reader.tensors:
        stored = tensor.tensor_type.name
        shape = tuple(int(d) for d in tensor.shape)
        if len(shape) < 2 or _in_family(stored, quant):
            continue
        row = shape[0]
        reason = (
            f"rows of {row} values do not split into {quant}'s blocks of {block}"
            if row % block
            else "llama.cpp's mixture for this type"
        )
        fallbacks.append(Fallback(tensor.name, shape, stored, reason))
    return QuantReport(quant, dict(sorted(counts.items())), tuple(fallbacks))
