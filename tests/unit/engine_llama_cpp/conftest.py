"""Fixtures of the llama.cpp engine tests: GGUF exports of the tiny models and SmolLM2, loaded both ways.

Every test here needs llama-cpp-python (`pip install -e '.[cpu]'`); without it the directory is
skipped with that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[cpu]')")

from bimedix2.engine import Engine  # noqa: E402
from bimedix2.export import ExportResult, export_gguf  # noqa: E402
from bimedix2.model.llama_cpp import LlamaCppOptions, load_llama_cpp  # noqa: E402

PARALLEL = 4


@pytest.fixture(scope="session")
def lc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llama-cpp-engine")


@pytest.fixture(scope="session")
def llava_export(tiny_llava_path: Path, lc_root: Path) -> Callable[[str], ExportResult]:
    """`llava_export(quant)`: the tiny Llava (BiMediX2 template) exported once per quant type."""
    done: dict[str, ExportResult] = {}

    def export(quant: str) -> ExportResult:
        if quant not in done:
            done[quant] = export_gguf(tiny_llava_path, lc_root / f"llava-{quant}", quant)
        return done[quant]

    return export


@pytest.fixture(scope="session")
def lc_llava(llava_export: Callable[[str], ExportResult]) -> Any:
    """The tiny Llava's F16 export (model + mmproj) loaded into llama.cpp, 4 parallel sequences."""
    result = llava_export("F16")
    return load_llama_cpp(
        result.model_gguf, mmproj=result.mmproj_gguf, options=LlamaCppOptions(context=1024, parallel=PARALLEL)
    )


@pytest.fixture(scope="session")
def lc_engine(lc_llava: Any) -> Engine:
    return Engine(lc_llava, backend="llama-cpp")


@pytest.fixture(scope="session")
def smol_f16(lc_root: Path) -> ExportResult:
    """SmolLM2-135M-Instruct (the embedded default) exported at F16; skipped when the wheel is absent."""
    from bimedix2.model.loader import embedded_default_dir, embedded_default_gguf

    try:
        embedded_default_gguf()
    except Exception as exc:  # noqa: BLE001 - report why the real model is absent
        pytest.skip(f"embedded default model not installed: {exc}")
    return export_gguf(embedded_default_dir(), lc_root / "smol-F16", "F16")


@pytest.fixture(scope="session")
def smol_lc_engine(smol_f16: ExportResult) -> Engine:
    loaded = load_llama_cpp(smol_f16.model_gguf, options=LlamaCppOptions(context=1024, parallel=PARALLEL))
    return Engine(loaded, backend="llama-cpp")


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two non-square random PNGs (so padding and resizing both run)."""
    root = tmp_path_factory.mktemp("lc-images")
    rng = np.random.default_rng(3)
    paths = []
    for i, shape in enumerate([(80, 60, 3), (50, 90, 3)]):
        path = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
