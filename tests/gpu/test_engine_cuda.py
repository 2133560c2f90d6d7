"""The CUDA path: bf16 by default on a GPU, pixel values cast to the model dtype, seeded sampling.

Skipped where there is no CUDA device (CI); run on a GPU machine with `pytest -m gpu tests/gpu`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bimedix2.engine import Engine
from bimedix2.model.loader import LoadOptions, load_model
from bimedix2.types import GenParams, ImageRef, Message

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_llava_bf16_on_cuda(tiny_llava_path: Path, tiny_llava_llama_path: Path, png_path: Path) -> None:
    for path in (tiny_llava_path, tiny_llava_llama_path):
        loaded = load_model(str(path), LoadOptions(device="cuda"))
        assert loaded.device.type == "cuda" and loaded.model.dtype == torch.bfloat16
        engine = Engine(loaded)
        conv = [Message("user", "ما الذي يظهر؟", (ImageRef(png_path),))]
        greedy = GenParams(max_new_tokens=8, temperature=0)
        reply = engine.generate(conv, greedy)
        assert "".join(engine.stream(conv, greedy)) == reply.text
        sampled = GenParams(max_new_tokens=8, temperature=1.0, seed=7)
        assert engine.generate(conv, sampled).text == engine.generate(conv, sampled).text
        batch = engine.generate_batch([conv, [Message("user", "Hello")]], greedy)
        assert len(batch) == 2 and batch[0].prompt_tokens == reply.prompt_tokens
