"""What `export_gguf` writes, read back with `gguf.GGUFReader`: keys, tensors, tokenizer, template, side files."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from bimedix2.conversation import BIMEDIX2_LLAMA3_TEMPLATE, BIMEDIX2_SYSTEM_PROMPT
from bimedix2.export import ExportResult, export_gguf, read_gguf_info
from bimedix2.types import RESEARCH_NOTICE, RESEARCH_NOTICE_AR


def _field(reader: gguf.GGUFReader, key: str):  # noqa: ANN202
    fld = reader.get_field(key)
    assert fld is not None, f"missing {key}"
    return fld.contents()


def _tensors(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    return {t.name: (tuple(int(d) for d in t.shape), t.tensor_type.name) for t in gguf.GGUFReader(path).tensors}


def test_causal_lm_f16_keys_and_tensors(causal_f16: ExportResult, tiny_causal_lm_path: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_causal_lm_path)
    reader = gguf.GGUFReader(causal_f16.model_gguf)
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.embedding_length") == config.hidden_size
    assert _field(reader, "llama.block_count") == config.num_hidden_layers
    assert _field(reader, "llama.attention.head_count_kv") == config.num_key_value_heads
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(500000.0)
    tensors = _tensors(causal_f16.model_gguf)
    # 9 per block + embeddings, final norm, untied output head
    assert len(tensors) == 9 * config.num_hidden_layers + 3
    assert tensors["token_embd.weight"] == ((config.hidden_size, config.vocab_size), "F16")
    assert tensors["blk.0.attn_k.weight"] == ((config.hidden_size, 16), "F16")  # 2 kv heads x 8
    assert tensors["blk.0.attn_norm.weight"] == ((config.hidden_size,), "F32")
    assert "output.weight" in tensors and "rope_freqs.weight" not in tensors


def test_tokenizer_metadata(causal_f16: ExportResult, tiny_causal_lm_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal_lm_path)
    reader = gguf.GGUFReader(causal_f16.model_gguf)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert len(tokens) == len(tok)
    assert [tokens[i] for i in range(10)] == tok.convert_ids_to_tokens(list(range(10)))
    types = _field(reader, "tokenizer.ggml.token_type")
    assert types[tok.convert_tokens_to_ids("<|eot_id|>")] == gguf.TokenType.CONTROL
    assert types[20] == gguf.TokenType.NORMAL
    assert len(_field(reader, "tokenizer.ggml.merges")) > 0
    assert _field(reader, "tokenizer.ggml.bos_token_id") == tok.bos_token_id
    assert _field(reader, "tokenizer.ggml.eot_token_id") == tok.convert_tokens_to_ids("<|eot_id|>")
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False  # the template writes {{ bos_token }}
    assert _field(reader, "tokenizer.chat_template") == tok.chat_template


def test_llava_model_gguf_carries_the_bimedix2_template(llava_f16: ExportResult) -> None:
    info = read_gguf_info(llava_f16.model_gguf)
    assert info.chat_template == BIMEDIX2_LLAMA3_TEMPLATE
    assert info.add_bos_token is False  # the template renders both released BOS tokens itself
    assert info.eot_token_id is not None and info.vocab_size == 400 and info.hidden_size == 32


def test_mmproj_keys_and_tensors(llava_f16: ExportResult, tiny_llava) -> None:  # noqa: ANN001
    vcfg = tiny_llava.model.config.vision_config
    reader = gguf.GGUFReader(llava_f16.mmproj_gguf)
    assert _field(reader, "general.architecture") == "clip"
    assert _field(reader, "clip.projector_type") == "mlp"
    assert _field(reader, "clip.has_vision_encoder") is True
    assert _field(reader, "clip.has_llava_projector") is True
    assert _field(reader, "clip.vision.image_size") == vcfg.image_size
    assert _field(reader, "clip.vision.patch_size") == vcfg.patch_size
    # feature layer -2: the last of the 3 blocks is dropped, hidden state 2 is the feature layer
    assert _field(reader, "clip.vision.block_count") == vcfg.num_hidden_layers - 1
    assert list(_field(reader, "clip.vision.feature_layer")) == [vcfg.num_hidden_layers - 1]
    assert np.allclose(_field(reader, "clip.vision.image_mean"), [0.48145466, 0.4578275, 0.40821073])
    assert _field(reader, "clip.use_gelu") is False  # CLIP's quick_gelu is libmtmd's default
    tensors = _tensors(llava_f16.mmproj_gguf)
    assert tensors["v.patch_embd.weight"][1] == "F16"
    assert tensors["mm.0.weight"] == ((vcfg.hidden_size, 32), "F16")
    assert tensors["mm.2.bias"] == ((32,), "F32")
    assert "v.class_embd" in tensors and not any(name.startswith("v.post_ln") for name in tensors)
    assert not any(name.startswith(f"v.blk.{vcfg.num_hidden_layers - 1}.") for name in tensors)
    info = read_gguf_info(llava_f16.mmproj_gguf)
    assert info.projector_width == 32 and info.tokens_per_image == tiny_llava.tokens_per_image == 16


def test_layout_side_files_and_notice(llava_f16: ExportResult) -> None:
    out = llava_f16.out_dir
    folder = out / "bimedix2" / "llava-hf-GGUF"  # LM Studio: publisher/model/, mmproj beside the model
    assert llava_f16.model_gguf == folder / "llava-hf-F16.gguf"
    assert llava_f16.mmproj_gguf == folder / "mmproj-llava-hf-F16.gguf"
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.txt", "bimedix2", "export.json"]
    modelfile = (out / "Modelfile").read_text()
    assert (
        "FROM ./bimedix2/llava-hf-GGUF/llava-hf-F16.gguf\nFROM ./bimedix2/llava-hf-GGUF/mmproj-llava-hf-F16.gguf"
        in (modelfile)
    )
    assert 'PARAMETER stop "<|eot_id|>"' in modelfile and "PARAMETER temperature 0.1" in modelfile
    assert f"# {RESEARCH_NOTICE}" in modelfile
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert template.startswith("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    assert BIMEDIX2_SYSTEM_PROMPT in template and template.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    readme = (out / "README.txt").read_text()
    assert RESEARCH_NOTICE in readme and RESEARCH_NOTICE_AR in readme and "add_bos_token = false" in readme
    config = json.loads((out / "export.json").read_text())
    assert config["quant"] == "F16" and config["source_format"] == "hf-llava"
    assert config["files"]["mmproj"] == "bimedix2/llava-hf-GGUF/mmproj-llava-hf-F16.gguf"
    assert config["versions"]["gguf"] and config["mmproj"]["tokens_per_image"] == 16
    assert config["language_model"]["tokenizer"]["add_bos_token"] is False
    assert config["language_model"]["llama_cpp_check"].startswith(("read by llama.cpp", "skipped"))


def test_llava_llama_layout_exports(tiny_llava_llama_path: Path, tmp_path: Path) -> None:
    result = export_gguf(tiny_llava_llama_path, tmp_path / "out", "F16", name="BiMediX2-tiny")
    assert result.config["source_format"] == "llava-llama"
    assert read_gguf_info(result.model_gguf).chat_template == BIMEDIX2_LLAMA3_TEMPLATE  # the format's default
    assert read_gguf_info(result.mmproj_gguf).projector_width == 32
    assert result.model_gguf.name == "BiMediX2-tiny-F16.gguf"


def test_f32_export_is_all_f32(causal_f32: ExportResult) -> None:
    assert set(read_gguf_info(causal_f32.model_gguf).tensor_types) == {"F32"}


def test_llama3_rope_scaling_travels_as_rope_freqs(llama3_rope_path: Path, tmp_path: Path) -> None:
    result = export_gguf(llama3_rope_path, tmp_path / "out", "F32")
    reader = gguf.GGUFReader(result.model_gguf)
    freqs = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
    # head_dim 8 -> 4 frequencies: the fastest kept, one smoothed, the two slowest divided by factor 8
    factors = np.asarray(freqs.data, dtype=np.float64)
    assert factors[0] == pytest.approx(1.0) and factors[2:] == pytest.approx(8.0)
    assert 1.0 < factors[1] < 8.0
    assert result.config["language_model"]["rope_type"] == "llama3"
