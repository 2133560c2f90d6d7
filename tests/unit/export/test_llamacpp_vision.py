"""The exported mmproj in llama.cpp's libmtmd: it loads beside its model, counts the toolkit's image tokens,
and computes the CLIP tower + projector's image features."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bimedix2.export import ExportResult


@pytest.fixture()
def open_mtmd(llava_f16: ExportResult, open_llama, llama_cpp) -> Iterator[Any]:  # noqa: ANN001
    """`open_mtmd(marker=None)`: (mtmd_cpp, an mtmd context of the exported mmproj over the exported model)."""
    from llama_cpp import mtmd_cpp

    llm = open_llama(llava_f16.model_gguf)
    contexts = []

    def open_(marker: bytes | None = None) -> tuple[Any, Any]:
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = 1
        params.print_timings = False
        params.warmup = False
        if marker is not None:
            params.media_marker = marker
        ctx = mtmd_cpp.mtmd_init_from_file(str(llava_f16.mmproj_gguf).encode(), llm.model, params)
        assert ctx, "libmtmd could not load the exported mmproj"
        contexts.append(ctx)
        return mtmd_cpp, ctx

    yield open_
    for ctx in contexts:
        mtmd_cpp.mtmd_free(ctx)


@pytest.fixture()
def mtmd(open_mtmd) -> tuple[Any, Any]:  # noqa: ANN001
    return open_mtmd()


def _chunks(mtmd_cpp: Any, ctx: Any, text: bytes, images: list[np.ndarray]) -> Any:
    bitmaps = [
        mtmd_cpp.mtmd_bitmap_init(
            img.shape[1], img.shape[0], (ctypes.c_uint8 * img.size).from_buffer_copy(img.tobytes())
        )
        for img in images
    ]
    chunks = mtmd_cpp.mtmd_input_chunks_init()
    prompt = mtmd_cpp.mtmd_input_text()
    prompt.text, prompt.text_len, prompt.add_special, prompt.parse_special = text, len(text), False, True
    array = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
    assert mtmd_cpp.mtmd_tokenize(ctx, chunks, ctypes.byref(prompt), array, len(bitmaps)) == 0
    for bitmap in bitmaps:
        mtmd_cpp.mtmd_bitmap_free(bitmap)
    return chunks


def _image_chunks(mtmd_cpp: Any, chunks: Any) -> list[Any]:
    out = []
    for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
        chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
        if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
            out.append(chunk)
    return out


def _image(seed: int, size: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_image_token_count_matches_the_toolkit(mtmd, tiny_llava) -> None:  # noqa: ANN001
    mtmd_cpp, ctx = mtmd
    marker = mtmd_cpp.mtmd_default_marker()
    for n_images in (1, 2):
        text = b"<|begin_of_text|>" + (marker + b"\n") * n_images + b"Describe."
        chunks = _chunks(mtmd_cpp, ctx, text, [_image(i) for i in range(n_images)])
        counts = [mtmd_cpp.mtmd_input_chunk_get_n_tokens(c) for c in _image_chunks(mtmd_cpp, chunks)]
        assert counts == [tiny_llava.tokens_per_image] * n_images == [16] * n_images
        mtmd_cpp.mtmd_input_chunks_free(chunks)


def _clip_features(tiny_llava: Any, image: np.ndarray, *, cls_last: bool) -> np.ndarray:
    """The projected layer -2 patch features of the tiny model for `image`; `cls_last` runs the tower as
    llama.cpp's libmtmd of llama-cpp-python 0.3.36 does (CLS appended after the patches, then rows 1..n)."""
    import torch
    from PIL import Image

    model = tiny_llava.model.model
    pixels = tiny_llava.processor.image_processor(images=Image.fromarray(image), return_tensors="pt")["pixel_values"]
    tower, embeddings = model.vision_tower, model.vision_tower.embeddings
    with torch.no_grad():
        patches = embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = embeddings.class_embedding.reshape(1, 1, -1)
        x = torch.cat([patches, cls] if cls_last else [cls, patches], dim=1)
        x = tower.pre_layrnorm(x + embeddings.position_embedding.weight[None])
        for layer in tower.encoder.layers[:-1]:  # feature layer -2
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        return model.multi_modal_projector(x[0, 1:]).numpy()


def test_image_features_match_the_clip_tower(mtmd, tiny_llava) -> None:  # noqa: ANN001
    mtmd_cpp, ctx = mtmd
    image = _image(7)
    chunks = _chunks(mtmd_cpp, ctx, mtmd_cpp.mtmd_default_marker(), [image])
    (chunk,) = _image_chunks(mtmd_cpp, chunks)
    assert mtmd_cpp.mtmd_encode_chunk(ctx, chunk) == 0
    n = mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)
    got = np.ctypeslib.as_array(mtmd_cpp.mtmd_get_output_embd(ctx), shape=(n * 32,)).reshape(n, 32).copy()
    mtmd_cpp.mtmd_input_chunks_free(chunks)

    reference = _clip_features(tiny_llava, image, cls_last=False)
    as_libmtmd_runs_it = _clip_features(tiny_llava, image, cls_last=True)
    scale = np.abs(reference).max()
    error, error_cls_last = np.abs(got - reference).max() / scale, np.abs(got - as_libmtmd_runs_it).max() / scale
    # the exported weights, layer cut, normalization and projector are right either way ...
    assert min(error, error_cls_last) < 1e-2, (error, error_cls_last)
    if error >= 1e-2:
        # ... but this libmtmd concatenates CLS after the patches (upstream llama.cpp issue #25814)
        pytest.xfail(f"libmtmd orders CLS last (ggml-org/llama.cpp#25814): {error:.2f} from transformers' features")


def _text_tokens(mtmd_cpp: Any, chunk: Any) -> list[int]:
    count = ctypes.c_size_t()
    pointer = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
    return [pointer[i] for i in range(count.value)]


def test_rendered_bimedix2_prompt_splits_at_image_as_hf_tokenizes_it(open_mtmd, tiny_llava) -> None:  # noqa: ANN001
    """With `<image>` as libmtmd's media marker, the released prompt's text tokens around the image are HF's."""
    from pathlib import Path

    from bimedix2.conversation import BIMEDIX2_LLAMA3, render_prompt
    from bimedix2.types import ImageRef, Message

    mtmd_cpp, ctx = open_mtmd(b"<image>")
    message = Message("user", "ما الذي يظهر في هذه الصورة؟", (ImageRef(Path("cxr.png")),))
    prompt = render_prompt([message], BIMEDIX2_LLAMA3, tiny_llava.tokenizer)
    ids = tiny_llava.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    at = ids.index(tiny_llava.image_token_id)
    chunks = _chunks(mtmd_cpp, ctx, prompt.encode(), [_image(3)])
    kinds = [
        mtmd_cpp.mtmd_input_chunk_get_type(mtmd_cpp.mtmd_input_chunks_get(chunks, i))
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks))
    ]
    text, image = mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT, mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE
    assert kinds == [text, image, text]
    before, _, after = (mtmd_cpp.mtmd_input_chunks_get(chunks, i) for i in range(3))
    assert _text_tokens(mtmd_cpp, before) == ids[:at]
    assert _text_tokens(mtmd_cpp, after) == ids[at + 1 :]
    assert ids[:2] == [tiny_llava.tokenizer.bos_token_id] * 2
    mtmd_cpp.mtmd_input_chunks_free(chunks)
