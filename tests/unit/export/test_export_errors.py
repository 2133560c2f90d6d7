"""Bad input: each a clear error, and nothing half-written left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import gguf
import pytest

from bimedix2.errors import ModelLoadError
from bimedix2.export import (
    ExportError,
    ExportResult,
    check_mmproj_matches,
    export_gguf,
    read_gguf_info,
    require_chat_template,
)


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_unloadable_source_is_the_loaders_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        export_gguf(tmp_path / "empty", tmp_path / "out", "F16")
    with pytest.raises(ModelLoadError, match="no such file"):
        export_gguf(tmp_path / "missing", tmp_path / "out", "F16")
    assert not (tmp_path / "out").exists()


def test_unknown_quant_lists_the_allowed_ones_before_any_work(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    def no_loading(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the checkpoint must not be loaded for a bad --quant")

    monkeypatch.setattr("bimedix2.model.loader.load_model", no_loading)
    with pytest.raises(ExportError, match=r"unknown quantization type 'Q3_X'\. Available: F32, F16, Q8_0.*Q4_K_M"):
        export_gguf(tmp_path / "whatever", tmp_path / "out", "Q3_X")
    assert not (tmp_path / "out").exists()


def test_non_empty_out_dir_needs_force(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    with pytest.raises(ExportError, match="exists and is not empty.*--force"):
        export_gguf(tiny_causal_lm_path, out, "F16")
    assert (out / "old.txt").read_text() == "previous export"
    result = export_gguf(tiny_causal_lm_path, out, "F16", force=True)
    assert not (out / "old.txt").exists() and result.model_gguf.is_file()
    assert _leftovers(tmp_path, "out") == []


def test_empty_out_dir_is_fine(tiny_causal_lm_path: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert export_gguf(tiny_causal_lm_path, tmp_path / "out", "F16").model_gguf.is_file()


def _fill_disk_after(monkeypatch, calls: int) -> None:  # noqa: ANN001
    """Make the GGUF writer fail with ENOSPC on its `calls`+1-th tensor."""
    real = gguf.GGUFWriter.write_tensor_data
    count = {"n": 0}

    def write(self, tensor, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, tensor, *args, **kwargs)

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", write)


def test_disk_full_leaves_nothing_behind(tiny_llava_path: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    _fill_disk_after(monkeypatch, calls=25)  # past the language model, inside the mmproj
    with pytest.raises(ExportError, match="No space left on device.*nothing was left"):
        export_gguf(tiny_llava_path, tmp_path / "out", "F16")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_with_force_keeps_the_previous_export(
    tiny_causal_lm_path: Path,
    tmp_path: Path,
    monkeypatch,  # noqa: ANN001
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    _fill_disk_after(monkeypatch, calls=3)
    with pytest.raises(ExportError, match="No space left"):
        export_gguf(tiny_causal_lm_path, out, "F16", force=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert _leftovers(tmp_path, "out") == []


def test_quantizer_failure_leaves_nothing_behind(
    tiny_causal_lm_path: Path,
    tmp_path: Path,
    monkeypatch,  # noqa: ANN001
) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    monkeypatch.setattr(llama_cpp, "llama_model_quantize", lambda *_: 1)
    with pytest.raises(ExportError, match="could not quantize .* to Q8_0"):
        export_gguf(tiny_causal_lm_path, tmp_path / "out", "Q8_0")
    assert list(tmp_path.iterdir()) == []


def _gguf_without_template(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_embedding_length(32)
    writer.add_token_list(["a", "b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_without_chat_template_is_a_clear_error(tmp_path: Path) -> None:
    path = _gguf_without_template(tmp_path / "bare.gguf")
    info = read_gguf_info(path)
    assert info.arch == "llama" and info.chat_template is None and info.hidden_size == 32 and info.vocab_size == 2
    with pytest.raises(ModelLoadError, match=r"bare\.gguf has no tokenizer\.chat_template.*--template"):
        require_chat_template(path)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        read_gguf_info(tmp_path / "x.gguf")
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        read_gguf_info(tmp_path / "missing.gguf")


def test_mmproj_of_another_model_is_refused(llava_f16: ExportResult, tmp_path: Path) -> None:
    from bimedix2.model.tiny import save_tiny_causal_lm

    wide = export_gguf(save_tiny_causal_lm(tmp_path / "wide", hidden=64), tmp_path / "wide-out", "F16")
    check_mmproj_matches(llava_f16.model_gguf, llava_f16.mmproj_gguf)  # the pair exported together fits
    with pytest.raises(ModelLoadError, match="width 32, but wide-F16.gguf has hidden size 64"):
        check_mmproj_matches(wide.model_gguf, llava_f16.mmproj_gguf)
    with pytest.raises(ModelLoadError, match="not a vision projector"):
        check_mmproj_matches(llava_f16.model_gguf, llava_f16.model_gguf)
    with pytest.raises(ModelLoadError, match="is a vision projector"):
        require_chat_template(llava_f16.mmproj_gguf)


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from bimedix2.model.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer(with_image_token=False)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "qwen")
    tok.save_pretrained(tmp_path / "qwen")
    with pytest.raises(ExportError, match="Llama-architecture.*'qwen2'"):
        export_gguf(tmp_path / "qwen", tmp_path / "out", "F16")
    assert not (tmp_path / "out").exists()
