"""Exported GGUFs run in llama.cpp (llama-cpp-python) as they run in transformers.

Text: the same prompt ids give the same 32 greedy tokens (English and Arabic), and llama.cpp
tokenizes the rendered prompt (BiMediX2's two BOS tokens included) to the same ids as the HF
tokenizer. Quantized exports load and answer. Vision: libmtmd loads the mmproj, counts the
toolkit's tokens per image, and computes the same image features as the CLIP tower + projector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bimedix2.conversation import BIMEDIX2_LLAMA3, render_prompt
from bimedix2.export import ExportResult, export_gguf, read_gguf_info
from bimedix2.types import Message

PROMPTS = {
    "en": "What abnormality is seen in this chest X-ray? Describe the right lower lobe.",
    "ar": "ما هو التشخيص المحتمل لهذه الأشعة السينية للصدر؟ صف الفص السفلي الأيمن.",
}


def _own_template_ids(tokenizer: Any, text: str) -> tuple[str, list[int]]:
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return prompt, tokenizer(prompt, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("lang", ["en", "ar"])
@pytest.mark.parametrize("quant", ["F32", "F16"])
def test_causal_lm_greedy_parity(
    quant: str,
    lang: str,
    causal_f32: ExportResult,
    causal_f16: ExportResult,
    tiny_causal_lm_path: Path,
    open_llama,
    greedy,
) -> None:  # noqa: ANN001
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_greedy, llama_greedy = greedy
    exported = causal_f32 if quant == "F32" else causal_f16
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_path).eval()
    prompt, ids = _own_template_ids(tokenizer, PROMPTS[lang])
    llm = open_llama(exported.model_gguf)
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
    expected = hf_greedy(model, ids)
    assert llama_greedy(llm, ids) == expected


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_bimedix2_prompt_tokens_and_greedy_parity(lang: str, llava_f16: ExportResult, tiny_llava, open_llama, greedy):  # noqa: ANN001, ANN201
    hf_greedy, llama_greedy = greedy
    tokenizer = tiny_llava.tokenizer
    prompt = render_prompt([Message("user", PROMPTS[lang])], BIMEDIX2_LLAMA3, tokenizer)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [tokenizer.bos_token_id] * 2  # the released prompt's two BOS tokens
    llm = open_llama(llava_f16.model_gguf)
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
    assert llama_greedy(llm, ids) == hf_greedy(tiny_llava.model, ids)


def test_gguf_template_renders_the_released_prompt(llava_f16: ExportResult, tiny_llava, llama_cpp) -> None:  # noqa: ANN001
    """llama-cpp-python renders the GGUF's own chat template to our prompt, two BOS tokens included."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    info = read_gguf_info(llava_f16.model_gguf)
    formatter = Jinja2ChatFormatter(
        template=info.chat_template, eos_token="<|eot_id|>", bos_token="<|begin_of_text|>", add_generation_prompt=True
    )
    messages = [
        Message("user", PROMPTS["ar"]),
        Message("assistant", "تظهر الصورة التهابا رئويا."),
        Message("user", "هل يوجد انصباب جنبي؟"),
    ]
    payload = [{"role": m.role, "content": m.content} for m in messages]
    rendered = formatter(messages=payload).prompt
    assert rendered == render_prompt(messages, BIMEDIX2_LLAMA3, tiny_llava.tokenizer)
    assert rendered.startswith("<|begin_of_text|><|begin_of_text|><|start_header_id|>system")


def test_llama3_rope_scaling_parity(llama3_rope_path: Path, tmp_path: Path, open_llama, greedy, monkeypatch) -> None:  # noqa: ANN001
    """48 greedy tokens over a 181-token prompt; the test is shown to see RoPE scaling and q/k row order."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from bimedix2.model.tiny import tiny_llama_config

    hf_greedy, llama_greedy = greedy
    tokenizer = AutoTokenizer.from_pretrained(llama3_rope_path)
    _, ids = _own_template_ids(tokenizer, " ".join(PROMPTS.values()) * 2)  # long enough for every band
    model = AutoModelForCausalLM.from_pretrained(llama3_rope_path).eval()
    expected = hf_greedy(model, ids, 48)
    unscaled = LlamaForCausalLM(tiny_llama_config(len(tokenizer))).eval()  # same shapes, plain RoPE
    unscaled.load_state_dict(model.state_dict())
    assert hf_greedy(unscaled, ids, 48) != expected  # the reference depends on the scaling

    result = export_gguf(llama3_rope_path, tmp_path / "out", "F32")
    assert llama_greedy(open_llama(result.model_gguf, n_ctx=512), ids, 48) == expected

    monkeypatch.setattr("bimedix2.export.gguf_llm.rope_permute", lambda weight, heads: weight)
    unpermuted = export_gguf(llama3_rope_path, tmp_path / "unpermuted", "F32")
    assert llama_greedy(open_llama(unpermuted.model_gguf, n_ctx=512), ids, 48) != expected  # q/k order matters


def _answers(llm: Any, ids: list[int], vocab: int, llama_greedy) -> list[int]:  # noqa: ANN001
    tokens = llama_greedy(llm, ids, 16)
    assert len(tokens) == 16 and all(0 <= t < vocab for t in tokens)
    return tokens


def test_q8_0_export_loads_and_answers(tiny_causal_lm_path: Path, tmp_path: Path, open_llama, greedy) -> None:  # noqa: ANN001
    from transformers import AutoTokenizer

    result = export_gguf(tiny_causal_lm_path, tmp_path / "out", "Q8_0")
    report = result.config["quantization"]
    assert report["fallbacks"] == [] and set(report["tensor_types"]) == {"F32", "Q8_0"}  # 32-wide rows fit Q8_0
    assert not list(result.model_gguf.parent.glob("*intermediate*"))
    _, ids = _own_template_ids(AutoTokenizer.from_pretrained(tiny_causal_lm_path), PROMPTS["en"])
    _answers(open_llama(result.model_gguf), ids, 400, greedy[1])


def test_k_quants_on_256_wide_model(tmp_path: Path, open_llama, greedy) -> None:  # noqa: ANN001
    from transformers import AutoTokenizer

    from bimedix2.model.tiny import save_tiny_causal_lm

    src = save_tiny_causal_lm(tmp_path / "wide", hidden=256)
    _, ids = _own_template_ids(AutoTokenizer.from_pretrained(src), PROMPTS["ar"])
    for quant in ("Q4_K_M", "Q5_K_M"):
        result = export_gguf(src, tmp_path / quant, quant)
        report = result.config["quantization"]
        assert report["fallbacks"] == [], report
        assert {t for t in report["tensor_types"] if t != "F32"} <= {"Q4_K", "Q5_K", "Q6_K"}
        _answers(open_llama(result.model_gguf), ids, 400, greedy[1])


def test_k_quant_fallback_on_tiny_rows_is_reported(
    tiny_causal_lm_path: Path, tmp_path: Path, open_llama, greedy
) -> None:  # noqa: ANN001
    from transformers import AutoTokenizer

    result = export_gguf(tiny_causal_lm_path, tmp_path / "out", "Q4_K_M")
    fallbacks = result.config["quantization"]["fallbacks"]
    assert fallbacks and all("do not split into Q4_K_M's blocks of 256" in f["reason"] for f in fallbacks)
    by_name = {f["tensor"]: f for f in fallbacks}
    assert by_name["blk.0.attn_q.weight"]["shape"] == [32, 32]
    _, ids = _own_template_ids(AutoTokenizer.from_pretrained(tiny_causal_lm_path), PROMPTS["en"])
    _answers(open_llama(result.model_gguf), ids, 400, greedy[1])


@pytest.fixture(scope="module")
def smollm2_f16(export_root: Path) -> tuple[Path, ExportResult]:
    """The real SmolLM2-135M-Instruct (the embedded default model) exported at F16; skipped when absent."""
    from bimedix2.model.loader import embedded_default_dir

    try:
        src = embedded_default_dir()
    except Exception as exc:  # noqa: BLE001 - report why the real model is absent
        pytest.skip(f"embedded default model not installed: {exc}")
    return src, export_gguf(src, export_root / "smollm2-f16", "F16")


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_smollm2_greedy_parity(lang: str, smollm2_f16, open_llama, greedy) -> None:  # noqa: ANN001
    """A real model: same tokenization and 32 greedy tokens as transformers holding the same F16 weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_greedy, llama_greedy = greedy
    src, result = smollm2_f16
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    with torch.no_grad():  # the GGUF holds the matrices in F16: give transformers the same values
        for param in model.parameters():
            if param.ndim >= 2:
                param.copy_(param.half().float())
    prompt, ids = _own_template_ids(tokenizer, PROMPTS[lang] + " 120/80 mmHg, 5 mg.")
    llm = open_llama(result.model_gguf, n_ctx=512)
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
    assert llama_greedy(llm, ids) == hf_greedy(model, ids)
