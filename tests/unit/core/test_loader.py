"""Format detection and load errors; explicit options win over anything inferred."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bimedix2.errors import ModelLoadError
from bimedix2.model.loader import LoadOptions, detect_format, load_model


def test_formats_come_from_config_not_path(
    tiny_llava_path: Path, tiny_llava_llama_path: Path, tiny_causal_lm_path: Path, tmp_path: Path
) -> None:
    assert detect_format(tiny_llava_path) == "hf-llava"
    assert detect_format(tiny_llava_llama_path) == "llava-llama"
    assert detect_format(tiny_causal_lm_path) == "causal-lm"
    # a directory *named* like a BiMediX2 llava checkpoint is still what its config says
    import shutil

    misleading = tmp_path / "BiMediX2-8B-llava_llama-hf"
    shutil.copytree(tiny_causal_lm_path, misleading)
    assert detect_format(misleading) == "causal-lm"
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    assert detect_format(gguf) == "gguf"


def test_causal_lm_uses_its_own_template(tiny_causal_lm_path: Path) -> None:
    loaded = load_model(str(tiny_causal_lm_path))
    assert loaded.info.family == "causal-lm" and not loaded.has_vision
    assert loaded.template.name == "model" and "<|eot_id|>" in loaded.template.stop_tokens
    forced = load_model(str(tiny_causal_lm_path), LoadOptions(chat_template="bimedix2-llama3"))
    assert forced.template.name == "bimedix2-llama3"


def test_missing_config_and_bad_json(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path / "empty"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="invalid JSON"):
        load_model(str(tmp_path / "broken"))


def test_unknown_template_and_dtype(tiny_causal_lm_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown chat template 'vicuna'"):
        load_model(str(tiny_causal_lm_path), LoadOptions(chat_template="vicuna"))
    with pytest.raises(ModelLoadError, match="unknown dtype 'float13'"):
        load_model(str(tiny_causal_lm_path), LoadOptions(dtype="float13"))


def test_cuda_requested_without_gpu(tiny_causal_lm_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model(str(tiny_causal_lm_path), LoadOptions(device="cuda"))


def test_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="'MBZUAI/BiMediX2-8B-hf' is not a local path and could not be downloaded"):
        load_model("MBZUAI/BiMediX2-8B-hf")


def test_model_without_template_asks_for_one(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_causal_lm_path, bare)
    for name in ("chat_template.jinja",):
        (bare / name).unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="no chat template of its own; pass one explicitly"):
        load_model(str(bare))


def test_unknown_format_name_and_model_type_list_the_available_formats(
    tiny_causal_lm_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=r"unknown checkpoint format 'vicuna'. Available: gguf, llava-llama"):
        load_model(str(tiny_causal_lm_path), LoadOptions(format="vicuna"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not_a_model"}))
    with pytest.raises(ModelLoadError, match="no checkpoint format recognises model_type 'not_a_model'. Available"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["X"]}))
    with pytest.raises(ModelLoadError, match="has no model_type; pass the format explicitly"):
        load_model(str(tmp_path))


def test_remote_code_causal_lm_is_detected_from_auto_map(tmp_path: Path) -> None:
    config = {"model_type": "my_remote_lm", "auto_map": {"AutoModelForCausalLM": "modeling_mine.MyForCausalLM"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert detect_format(tmp_path) == "causal-lm"
    # Phi-3-vision maps AutoModelForCausalLM too, but is its own format (ahead of causal-lm)
    config = {"model_type": "phi3_v", "auto_map": {"AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert detect_format(tmp_path) == "phi3-v"


def test_quantization_is_checked_before_any_weights_load(tiny_llava_llama_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="llava-llama checkpoint, .* none only, not '4bit'; convert it first"):
        load_model(str(tiny_llava_llama_path), LoadOptions(quantization="4bit"))
    with pytest.raises(ModelLoadError, match="unknown quantization '8bit'. Available: none, 4bit"):
        load_model(str(tiny_llava_llama_path), LoadOptions(quantization="8bit"))  # type: ignore[arg-type]
