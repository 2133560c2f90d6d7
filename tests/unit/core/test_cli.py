"""The `bimedix2` CLI on tiny models: ask, chat, info, errors, research-use notice."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bimedix2.cli import main
from bimedix2.types import RESEARCH_NOTICE


def test_ask_streams_answer_to_stdout_and_notice_to_stderr(tiny_llava_path: Path, png_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(
        [
            "ask",
            "--model",
            str(tiny_llava_path),
            "--temperature",
            "0",
            "--max-new-tokens",
            "5",
            "--image",
            str(png_path),
            "--image",
            str(png_path),
            "ما الذي يظهر في الصورتين؟",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert out.endswith("\n") and RESEARCH_NOTICE not in out
    assert RESEARCH_NOTICE in err


def test_ask_output_is_the_engine_reply(tiny_llava_path: Path, tiny_engine, capsys) -> None:  # noqa: ANN001
    from bimedix2.types import GenParams, Message

    main(["ask", "--model", str(tiny_llava_path), "--temperature", "0", "--max-new-tokens", "6", "What is anemia?"])
    out, _ = capsys.readouterr()
    expected = tiny_engine.generate([Message("user", "What is anemia?")], GenParams(max_new_tokens=6, temperature=0))
    assert out == expected.text + "\n"


def test_ask_image_with_text_only_model_explains(tiny_causal_lm_path: Path, png_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(["ask", "--model", str(tiny_causal_lm_path), "--image", str(png_path), "What is this?"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "no vision encoder" in err and "BiMediX2-8B-hf" in err


def test_ask_missing_image_names_it(tiny_llava_path: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(["ask", "--model", str(tiny_llava_path), "--image", str(tmp_path / "nope.png"), "What is this?"])
    _, err = capsys.readouterr()
    assert code == 2 and "nope.png: image file not found" in err


def test_missing_model_path_is_a_clear_error(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(["info", "--model", str(tmp_path / "no-such-model")])
    assert code == 2 and "no-such-model: no such file or directory" in capsys.readouterr().err


def test_info_json(tiny_llava_llama_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["info", "--json", "--model", str(tiny_llava_llama_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source_format"] == "llava-llama" and info["family"] == "llava"
    assert info["chat_template"] == "bimedix2-llama3" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["image_tokens"] == 16


def test_chat_multi_turn_with_image_in_turn_two_and_reset(
    tiny_llava_path: Path,
    png_path: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    script = (
        "\n".join(
            [
                "What is a pneumothorax?",
                f"/image {png_path}",
                "هل تظهر هذه الصورة استرواحا صدريا؟",
                f"/image {tmp_path / 'missing.png'}",
                "/reset",
                "Hello again",
                "/quit",
            ]
        )
        + "\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["chat", "--model", str(tiny_llava_path), "--temperature", "0", "--max-new-tokens", "4"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip("\n").split("\n")) >= 3 or out.count("\n") == 3  # three answers
    assert "(1 image(s) attached to your next message)" in err
    assert "missing.png: image file not found" in err
    assert "(conversation cleared)" in err
    assert err.count(RESEARCH_NOTICE) >= 3


def test_chat_keeps_history_between_turns(tiny_llava_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from bimedix2.engine import Engine

    seen: list[int] = []
    original = Engine.stream

    def spy(self, messages, params):  # noqa: ANN001, ANN202
        seen.append(len(messages))
        return original(self, messages, params)

    monkeypatch.setattr(Engine, "stream", spy)
    monkeypatch.setattr(sys, "stdin", io.StringIO("first\nsecond\n/reset\nthird\n"))
    main(["chat", "--model", str(tiny_llava_path), "--temperature", "0", "--max-new-tokens", "2"])
    assert seen == [1, 3, 1]


def test_console_script_help() -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "bimedix2", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("ask", "chat", "convert", "info"):
        assert command in result.stdout


@pytest.mark.parametrize("bad", [["ask", "--max-new-tokens", "0", "hi"], ["ask", "--temperature", "-1", "hi"]])
def test_bad_generation_options(bad: list[str]) -> None:
    with pytest.raises(SystemExit, match="must be"):
        main(bad)
