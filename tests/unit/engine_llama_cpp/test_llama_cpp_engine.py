"""The llama-cpp engine behaves as the transformers engine does: streaming, stop strings, cancel, seeds,
batches as parallel sequences, and errors that name the problem."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bimedix2.commands.options import add_engine_options, add_model_options, build_engine, resolve_engine
from bimedix2.engine import Engine
from bimedix2.errors import ConfigError, ContextTooLongError, ModelLoadError, NoVisionError
from bimedix2.model.llama_cpp import LlamaCppOptions, load_llama_cpp
from bimedix2.types import GenParams, ImageRef, Message

from .helpers import GREEDY, greedy_ids

QUESTION = [Message("user", "What are the symptoms of iron deficiency anemia?")]
ARABIC = [Message("user", "ما هي أعراض فقر الدم؟")]


def test_stream_pieces_join_to_the_reply(smol_lc_engine: Engine) -> None:
    for conv in (QUESTION, ARABIC):
        stream = smol_lc_engine.stream(conv, GREEDY)
        pieces = list(stream)
        assert len(pieces) > 1 and "".join(pieces) == stream.reply.text
        assert stream.reply.text == smol_lc_engine.generate(conv, GREEDY).text


def test_stop_string_cuts_the_reply(smol_lc_engine: Engine) -> None:
    full = smol_lc_engine.generate(QUESTION, GREEDY).text
    stop = full.split()[3]
    params = GenParams(max_new_tokens=32, temperature=0.0, stop=(stop,))
    reply = smol_lc_engine.generate(QUESTION, params)
    assert reply.text == full[: full.index(stop)] and reply.finish_reason == "stop"
    streamed = smol_lc_engine.stream(QUESTION, params)
    assert "".join(streamed) == reply.text


def test_cancel_ends_the_stream_early(smol_lc_engine: Engine) -> None:
    stream = smol_lc_engine.stream(QUESTION, GenParams(max_new_tokens=64, temperature=0.0))
    for _ in stream:
        stream.cancel()
    assert stream.reply.completion_tokens < 64 and stream.reply.finish_reason == "stop"


def test_seeded_sampling_repeats_and_seeds_differ(lc_engine: Engine) -> None:
    def sample(seed: int) -> list[int]:
        return greedy_ids(lc_engine, QUESTION, GenParams(max_new_tokens=24, temperature=1.0, seed=seed))

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_batch_rows_are_parallel_sequences(smol_lc_engine: Engine) -> None:
    """A batch gives each conversation what it gets alone (greedy), with its own max_new_tokens."""
    convs = [QUESTION, ARABIC, [Message("user", "Name three bones of the arm.")]]
    alone = [smol_lc_engine.generate(c, GREEDY).text for c in convs]
    assert [r.text for r in smol_lc_engine.generate_batch(convs, GREEDY)] == alone
    params = [GenParams(max_new_tokens=n, temperature=0.0) for n in (32, 5, 32)]
    prepared = [smol_lc_engine.prepare([c], p) for c, p in zip(convs, params, strict=True)]
    batch = smol_lc_engine.stream_batch(prepared, params)
    texts = ["".join(row) for row in batch.rows]
    assert texts[0] == alone[0] and texts[2] == alone[2]
    assert batch.rows[1].reply.completion_tokens == 5 and alone[1].startswith(texts[1])


def test_more_rows_than_parallel_sequences_is_an_error(smol_lc_engine: Engine) -> None:
    with pytest.raises(ConfigError, match="parallel"):
        smol_lc_engine.generate_batch([QUESTION] * 5, GREEDY)


def test_prompt_longer_than_the_context_is_refused(smol_f16: Any) -> None:
    loaded = load_llama_cpp(smol_f16.model_gguf, options=LlamaCppOptions(context=32))
    with pytest.raises(ContextTooLongError, match="32 tokens"):
        Engine(loaded, backend="llama-cpp").generate(QUESTION, GREEDY)


def test_text_model_refuses_images(smol_lc_engine: Engine, image_files) -> None:  # noqa: ANN001
    with pytest.raises(NoVisionError):
        smol_lc_engine.generate([Message("user", "Describe", (ImageRef(image_files[0]),))], GREEDY)


def test_gguf_without_chat_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gguf

    from bimedix2.model.tiny import save_tiny_gguf

    monkeypatch.setattr(gguf.GGUFWriter, "add_chat_template", lambda self, template: None)
    path = save_tiny_gguf(tmp_path / "no-template.gguf")
    with pytest.raises(ModelLoadError, match="no tokenizer.chat_template.*--template bimedix2-llama3"):
        load_llama_cpp(path)
    loaded = load_llama_cpp(path, template="bimedix2-llama3")
    assert loaded.template.name == "bimedix2-llama3"
    assert Engine(loaded, backend="llama-cpp").generate(QUESTION, GenParams(max_new_tokens=4)).completion_tokens


def test_mmproj_of_another_model(smol_f16: Any, llava_export) -> None:  # noqa: ANN001
    mmproj = llava_export("F16").mmproj_gguf
    with pytest.raises(ModelLoadError, match="projects images to width 32.*hidden size 576"):
        load_llama_cpp(smol_f16.model_gguf, mmproj=mmproj)


def test_files_in_the_wrong_place(llava_export, tmp_path: Path) -> None:  # noqa: ANN001
    exported = llava_export("F16")
    with pytest.raises(ModelLoadError, match="vision projector.*--mmproj"):
        load_llama_cpp(exported.mmproj_gguf)
    with pytest.raises(ModelLoadError, match="not a vision projector"):
        load_llama_cpp(exported.model_gguf, mmproj=exported.model_gguf)
    (tmp_path / "x.gguf").write_text("not gguf")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        load_llama_cpp(tmp_path / "x.gguf")


def test_backend_refuses_a_transformers_model(tiny_llava: Any) -> None:
    with pytest.raises(ConfigError, match="load_llama_cpp"):
        Engine(tiny_llava, backend="llama-cpp")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    add_engine_options(parser)
    return parser.parse_args(list(argv))


def test_auto_picks_llama_cpp_for_gguf(llava_export, tiny_llava_path: Path) -> None:  # noqa: ANN001
    gguf = str(llava_export("F16").model_gguf)
    assert resolve_engine("auto", gguf) == "llama-cpp"
    assert resolve_engine("auto", str(tiny_llava_path)) == "transformers"
    assert resolve_engine("auto", None) == "transformers"
    assert resolve_engine("transformers", gguf) == "transformers"
    with pytest.raises(ConfigError, match="export gguf"):
        resolve_engine("llama-cpp", str(tiny_llava_path))
    with pytest.raises(ConfigError, match="Available"):
        resolve_engine("vllm", gguf)


def test_auto_without_llama_cpp_says_so_once(
    llava_export, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:  # noqa: ANN001
    import bimedix2.model.llama_cpp_lib as lib

    monkeypatch.setattr(lib, "llama_cpp_available", lambda: False)
    gguf = str(llava_export("F16").model_gguf)
    assert resolve_engine("auto", gguf) == resolve_engine("auto", gguf) == "transformers"
    assert capsys.readouterr().err.count("llama-cpp-python is not installed") == 1
    with pytest.raises(ConfigError, match="not installed"):
        resolve_engine("llama-cpp", gguf)


def test_build_engine_from_flags(llava_export, image_files) -> None:  # noqa: ANN001
    exported = llava_export("F16")
    engine = build_engine(_args("--model", str(exported.model_gguf), "--mmproj", str(exported.mmproj_gguf)))
    assert type(engine.backend).__name__ == "LlamaCppBackend" and engine.loaded.has_vision
    assert engine.generate([Message("user", "Describe", (ImageRef(image_files[0]),))], GREEDY).completion_tokens
    with pytest.raises(ConfigError, match="--dtype does not apply"):
        build_engine(_args("--model", str(exported.model_gguf), "--dtype", "bfloat16"))
    with pytest.raises(ConfigError, match="--mmproj is for --engine llama-cpp"):
        build_engine(_args("--engine", "transformers", "--mmproj", str(exported.mmproj_gguf)))
