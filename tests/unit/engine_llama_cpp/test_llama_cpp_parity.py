"""`--engine llama-cpp` against the transformers engine: same prompt ids, same greedy tokens, same image tokens.

Text: the tiny random Llava (BiMediX2 template, two BOS) and the real SmolLM2, exported at F16,
give the same 32 greedy tokens in English and Arabic. Images: the prompt ids and the image-token
count are the same; the pixels the toolkit's loader hands libmtmd give transformers' own CLIP
features and, with scripts/build-llama-cpp.sh's build (llama.cpp#25814 fixed), the same greedy
tokens with one or two images; a stock llama-cpp-python 0.3.36 drops patch 0 and keeps CLS, so
there the pixel test checks that exact defect and the image-token tests xfail naming it.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from bimedix2.engine import Engine
from bimedix2.images import load_image, pad_to_square
from bimedix2.model.llama_cpp import LlamaCppOptions, load_llama_cpp
from bimedix2.model.llama_cpp_images import ImageChunks
from bimedix2.model.llama_cpp_lib import mtmd_orders_cls_first
from bimedix2.types import GenParams, ImageRef, Message

from .helpers import GREEDY, greedy_ids, prompt_ids

ENGLISH = "What are the symptoms of iron deficiency anemia?"
ARABIC = "ما هي أعراض فقر الدم الناجم عن نقص الحديد؟"


def _conversations(images: list[Path]) -> dict[str, list[Message]]:
    one, two = (ImageRef(images[0]),), (ImageRef(images[0]), ImageRef(images[1]))
    return {
        "text-en": [Message("user", ENGLISH)],
        "text-ar": [Message("user", ARABIC)],
        "image-en": [Message("user", "Describe the X-ray.", one)],
        "two-images-ar": [Message("user", "قارن بين الصورتين.", two)],
        "image-in-turn-3": [
            Message("user", ENGLISH),
            Message("assistant", "Fatigue and pallor."),
            Message("user", "And in this image?", one),
        ],
    }


@pytest.mark.parametrize("name", ["text-en", "text-ar", "image-en", "two-images-ar", "image-in-turn-3"])
def test_prompt_ids_are_the_transformers_engines(lc_engine: Engine, tiny_engine: Engine, image_files, name) -> None:  # noqa: ANN001
    conv = _conversations(image_files)[name]
    ours = prompt_ids(lc_engine, conv, image_token_id=tiny_engine.loaded.image_token_id)
    assert ours == prompt_ids(tiny_engine, conv)
    assert ours[:2] == [tiny_engine.loaded.tokenizer.bos_token_id] * 2  # the released two-BOS prefix


@pytest.mark.parametrize("question", [ENGLISH, ARABIC], ids=["en", "ar"])
def test_tiny_text_greedy_tokens_match(lc_engine: Engine, tiny_engine: Engine, question: str) -> None:
    conv = [Message("user", question)]
    ours = greedy_ids(lc_engine, conv)
    assert len(ours) == 32 or ours[-1] in lc_engine.stop_token_ids
    assert ours == greedy_ids(tiny_engine, conv)
    assert lc_engine.generate(conv, GREEDY).text == tiny_engine.generate(conv, GREEDY).text


@pytest.mark.parametrize("question", [ENGLISH, ARABIC], ids=["en", "ar"])
def test_smollm2_text_greedy_tokens_match(smol_lc_engine: Engine, smollm2_engine: Engine, question: str) -> None:
    conv = [Message("user", question)]
    ours = greedy_ids(smol_lc_engine, conv)
    assert ours == greedy_ids(smollm2_engine, conv)
    reply = smol_lc_engine.generate(conv, GREEDY)
    assert reply.text == smollm2_engine.generate(conv, GREEDY).text
    assert reply.language == ("ar" if question == ARABIC else "en")


def test_image_token_count_is_the_toolkits(lc_llava: Any, tiny_engine: Engine, image_files) -> None:  # noqa: ANN001
    expected = tiny_engine.loaded.tokens_per_image
    assert lc_llava.tokens_per_image == expected == 16
    image = pad_to_square(load_image(ImageRef(image_files[0])))
    with ImageChunks.of_image(lc_llava.handle, image, lc_llava.image_size) as chunks:
        assert chunks.image_tokens() == expected  # what libmtmd itself reports


def installed_llama_cpp() -> Any:
    import llama_cpp

    return llama_cpp


def _libmtmd_features(loaded: Any, image: Image.Image) -> np.ndarray:
    mtmd, ctx = loaded.handle.mtmd, loaded.handle.vision
    with ImageChunks.of_image(loaded.handle, image, loaded.image_size) as chunks:
        (piece,) = [p for p in chunks.pieces if p.image is not None]
        assert mtmd.mtmd_encode_chunk(ctx, piece.image) == 0
        n, width = piece.n_tokens, int(loaded.handle.lib.llama_model_n_embd(loaded.handle.model))
        data = mtmd.mtmd_get_output_embd(ctx)
        return np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_float)), shape=(n * width,)).reshape(
            n, width
        )


def _transformers_features(tiny_engine: Engine, image: Image.Image) -> np.ndarray:
    loaded = tiny_engine.loaded
    pixels = loaded.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = loaded.model.get_image_features(pixel_values=pixels)
    out = getattr(out, "pooler_output", out)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.reshape(-1, out.shape[-1]).numpy()


def _cls_last_positions(mmproj: Path, out: Path) -> Path:
    """A copy of `mmproj` whose position embeddings are ordered for a graph that puts CLS after the patches."""
    import gguf

    shutil.copyfile(mmproj, out)
    reader = gguf.GGUFReader(out, "r+")
    (table,) = [t for t in reader.tensors if t.name == "v.position_embd.weight"]
    rows = np.array(table.data)
    table.data[:] = np.concatenate([rows[1:], rows[:1]])
    del reader
    return out


def test_toolkit_pixels_reach_libmtmd_as_transformers_sees_them(
    llava_export, tiny_engine: Engine, image_files, tmp_path: Path
) -> None:  # noqa: ANN001
    """Loader -> pad -> CLIP resize -> libmtmd gives transformers' patch features."""
    exported = llava_export("F32")
    image = pad_to_square(load_image(ImageRef(image_files[1])))
    reference = _transformers_features(tiny_engine, image)
    scale = np.abs(reference).max()
    options = LlamaCppOptions(context=256)
    if mtmd_orders_cls_first(installed_llama_cpp()):
        loaded = load_llama_cpp(exported.model_gguf, mmproj=exported.mmproj_gguf, options=options)
        assert np.abs(_libmtmd_features(loaded, image) - reference).max() / scale < 1e-3
    else:
        # a stock 0.3.36 puts CLS last and keeps rows 1..N: with the position table reordered for that
        # graph, patch k arrives as row k-1 and CLS as the last row
        mmproj = _cls_last_positions(exported.mmproj_gguf, tmp_path / "mmproj-cls-last.gguf")
        ours = _libmtmd_features(load_llama_cpp(exported.model_gguf, mmproj=mmproj, options=options), image)
        assert np.abs(ours[:-1] - reference[1:]).max() / scale < 1e-3


@pytest.mark.parametrize("name", ["image-en", "two-images-ar"])
def test_image_greedy_tokens_match(lc_engine: Engine, tiny_engine: Engine, image_files, name: str) -> None:  # noqa: ANN001
    if not mtmd_orders_cls_first(installed_llama_cpp()):
        pytest.xfail("this llama-cpp-python has llama.cpp#25814 (CLS last); scripts/build-llama-cpp.sh fixes it")
    conv = _conversations(image_files)[name]
    assert greedy_ids(lc_engine, conv) == greedy_ids(tiny_engine, conv)
    assert lc_engine.generate(conv, GREEDY).text == tiny_engine.generate(conv, GREEDY).text


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantized_exports_load_and_answer(llava_export, image_files, quant: str) -> None:  # noqa: ANN001
    exported = llava_export(quant)
    engine = Engine(load_llama_cpp(exported.model_gguf, mmproj=exported.mmproj_gguf), backend="llama-cpp")
    for conv in (_conversations(image_files)["text-ar"], _conversations(image_files)["image-en"]):
        reply = engine.generate(conv, GREEDY)
        assert reply.completion_tokens > 0 and reply.finish_reason in ("stop", "length")


@pytest.fixture(scope="session")
def smol_q8(smol_f16, lc_root: Path) -> Any:  # noqa: ANN001
    from bimedix2.export import export_gguf
    from bimedix2.model.loader import embedded_default_dir

    return export_gguf(embedded_default_dir(), lc_root / "smol-Q8_0", "Q8_0")


def _raw_greedy(model: Path, ids: list[int], steps: int) -> list[int]:
    """Plain llama-cpp-python (`Llama.generate`, greedy) on the same ids, without extra buffers."""
    import llama_cpp

    original = llama_cpp.llama_cpp.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_cpp.llama_model_default_params = without_extra_buffers
    try:
        llm = llama_cpp.Llama(str(model), n_ctx=512, verbose=False)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = original
    out: list[int] = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if len(out) == steps:
            break
    llm.close()
    return out


def test_q8_0_greedy_tokens_are_raw_llama_cpp_pythons(smol_q8) -> None:  # noqa: ANN001
    """The engine's llama.cpp settings give llama.cpp's own answer (flash attention on got French here)."""
    engine = Engine(load_llama_cpp(smol_q8.model_gguf), backend="llama-cpp")
    conv = [Message("user", "What is the capital of France?")]
    ids = prompt_ids(engine, conv)
    ours = greedy_ids(engine, conv, GenParams(max_new_tokens=16, temperature=0.0))
    stop = ours[-1] in engine.stop_token_ids
    assert ours[: len(ours) - stop] == _raw_greedy(smol_q8.model_gguf, ids, 16)[: len(ours) - stop]
    assert "Paris" in engine.generate(conv, GREEDY).text


def test_the_fixed_build_is_told_apart_by_its_version_label() -> None:
    def build(version: str) -> Any:
        return type("lib", (), {"__version__": version})

    assert mtmd_orders_cls_first(build("0.3.36+bimedix2.mtmd25844"))
    assert not mtmd_orders_cls_first(build("0.3.36"))
    assert not mtmd_orders_cls_first(build("0.3.36+mtmd258440"))


def test_a_stock_build_warns_when_a_clip_projector_loads(
    llava_export, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # noqa: ANN001
    exported = llava_export("F16")
    monkeypatch.setattr(installed_llama_cpp(), "__version__", "0.3.36")
    with caplog.at_level("WARNING", logger="bimedix2.model.llama_cpp"):
        load_llama_cpp(exported.model_gguf, mmproj=exported.mmproj_gguf, options=LlamaCppOptions(context=256))
    assert "llama.cpp#25814" in caplog.text and "scripts/build-llama-cpp.sh" in caplog.text
