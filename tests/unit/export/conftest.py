"""Fixtures of the GGUF export tests: exports of the tiny models, and llama.cpp loaded safely on this CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bimedix2.export import ExportResult, export_gguf


@pytest.fixture(scope="session")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf-exports")


@pytest.fixture(scope="session")
def causal_f16(tiny_causal_lm_path: Path, export_root: Path) -> ExportResult:
    """The tiny causal LM exported at F16."""
    return export_gguf(tiny_causal_lm_path, export_root / "causal-f16", "F16")


@pytest.fixture(scope="session")
def causal_f32(tiny_causal_lm_path: Path, export_root: Path) -> ExportResult:
    """The tiny causal LM exported at F32."""
    return export_gguf(tiny_causal_lm_path, export_root / "causal-f32", "F32")


@pytest.fixture(scope="session")
def llava_f16(tiny_llava_path: Path, export_root: Path) -> ExportResult:
    """The tiny transformers Llava (BiMediX2 template) exported at F16: model + mmproj."""
    return export_gguf(tiny_llava_path, export_root / "llava-f16", "F16")


@pytest.fixture(scope="session")
def llama3_rope_path(tiny_dir: Path) -> Path:
    """A tiny Llama-3.1-style causal LM whose RoPE scaling bands all apply within a short context.

    Its q/k weights are scaled up 8x: random tiny models attend almost uniformly, so their tokens
    barely depend on positions; sharpened, a wrong RoPE (scaling or row order) changes them.
    """
    import torch
    from transformers import LlamaForCausalLM

    from bimedix2.model.tiny import build_tiny_tokenizer, tiny_llama_config

    torch.manual_seed(1)
    tok = build_tiny_tokenizer(with_image_token=False)
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256,
    }
    path = tiny_dir / "llama3-rope"
    model = LlamaForCausalLM(tiny_llama_config(len(tok), rope_scaling=scaling)).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(8.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def llama_cpp() -> Any:
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


@pytest.fixture(scope="session")
def open_llama(llama_cpp: Any) -> Iterator[Callable[..., Any]]:
    """`open_llama(path, **kw)`: a `llama_cpp.Llama` on one thread, without llama.cpp's extra buffer types.

    `Llama()` takes no `use_extra_bufts` argument (it swallows unknown keywords), so the model
    parameters it starts from are patched for this session; the repacking/AMX buffers crash on
    this machine's CPU. Every model opened is closed at the end.
    """
    original = llama_cpp.llama_cpp.llama_model_default_params

    def without_extra_bufts() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    opened = []

    def open_(path: Path, **kwargs: Any) -> Any:
        options = {"n_ctx": 256, "n_threads": 1, "n_threads_batch": 1, "verbose": False, **kwargs}
        llm = llama_cpp.Llama(str(path), **options)
        opened.append(llm)
        return llm

    llama_cpp.llama_cpp.llama_model_default_params = without_extra_bufts
    try:
        yield open_
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = original
        for llm in opened:
            llm.close()


def hf_greedy(model: Any, ids: list[int], steps: int = 32) -> list[int]:
    """Greedy continuation by transformers, recomputing the whole sequence each step (no stop token)."""
    import torch

    seq = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
            seq.append(int(torch.argmax(logits)))
    return seq[len(ids) :]


def llama_greedy(llm: Any, ids: list[int], steps: int = 32) -> list[int]:
    """Greedy continuation by llama.cpp from token ids (top-k 1, no repeat penalty, no stop token)."""
    out = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if len(out) == steps:
            break
    return out


@pytest.fixture(scope="session")
def greedy() -> tuple[Callable[..., list[int]], Callable[..., list[int]]]:
    """(hf_greedy, llama_greedy)."""
    return hf_greedy, llama_greedy
