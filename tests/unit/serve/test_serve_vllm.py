"""The vLLM launch command and chat-template file (vLLM itself needs CUDA and is not run here)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from bimedix2.cli import main
from bimedix2.conversation import BIMEDIX2_LLAMA3, render_prompt
from bimedix2.errors import ConfigError
from bimedix2.model.tiny import build_tiny_tokenizer
from bimedix2.serve.vllm import VllmOptions, build_command, check_model, launch_env, write_template
from bimedix2.types import ImageRef, Message


def arg(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_command_carries_template_parallelism_and_defaults(tmp_path: Path) -> None:
    template = write_template(tmp_path / "t.jinja")
    cmd = build_command(
        VllmOptions(
            model="MBZUAI/BiMediX2-70B-hf",
            tensor_parallel_size=4,
            port=9001,
            served_model_name="bimedix2",
            allowed_local_media_path="/data/images",
        ),
        template,
    )
    assert cmd[:3] == ["vllm", "serve", "MBZUAI/BiMediX2-70B-hf"]
    assert arg(cmd, "--tensor-parallel-size") == "4"
    assert arg(cmd, "--chat-template") == str(template)
    assert arg(cmd, "--chat-template-content-format") == "openai"
    assert (arg(cmd, "--host"), arg(cmd, "--port"), arg(cmd, "--served-model-name")) == (
        "127.0.0.1",
        "9001",
        "bimedix2",
    )
    assert json.loads(arg(cmd, "--override-generation-config")) == {"temperature": 0.1}
    assert json.loads(arg(cmd, "--limit-mm-per-prompt")) == {"image": 8}
    assert arg(cmd, "--max-model-len") == "4096"
    assert arg(cmd, "--allowed-local-media-path") == "/data/images"
    assert "--api-key" not in cmd  # the key goes through the environment, never argv
    assert launch_env({"PATH": "/bin"}, "s3cret") == {"PATH": "/bin", "VLLM_API_KEY": "s3cret"}
    assert launch_env({"PATH": "/bin"}, None) == {"PATH": "/bin"}
    with pytest.raises(ConfigError):
        build_command(VllmOptions(model="m", tensor_parallel_size=0), template)


def test_template_file_renders_vllm_style_messages_like_our_engine(tmp_path: Path) -> None:
    """vLLM (content format 'openai') hands the template {"type": "image"} parts in the user's order."""
    template = write_template(tmp_path / "t.jinja").read_text(encoding="utf-8")
    assert template == BIMEDIX2_LLAMA3.jinja
    tokenizer = build_tiny_tokenizer()
    vllm_messages = [
        {"role": "user", "content": [{"type": "text", "text": "ما التشخيص؟"}, {"type": "image"}, {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Pneumonia."}]},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
    ]
    rendered = tokenizer.apply_chat_template(
        vllm_messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    ours = render_prompt(
        [
            Message("user", "ما التشخيص؟", (ImageRef(b"a"), ImageRef(b"b"))),
            Message("assistant", "Pneumonia."),
            Message("user", "Why?"),
        ],
        BIMEDIX2_LLAMA3,
        tokenizer,
        steer_language=False,
    )
    assert rendered == ours
    assert rendered.count("<image>\n") == 2
    assert rendered.startswith("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nA chat")
    assert rendered.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_original_llava_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_llama"}))
    with pytest.raises(ConfigError, match="bimedix2 convert"):
        check_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    check_model(str(tmp_path))


def test_cli_dry_run_prints_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIMEDIX2_API_KEY", "s3cret")
    template = tmp_path / "bimedix2.jinja"
    assert (
        main(
            [
                "serve",
                "--engine",
                "vllm",
                "--model",
                "MBZUAI/BiMediX2-70B-hf",
                "--tp",
                "8",
                "--template-file",
                str(template),
                "--dry-run",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    cmd = shlex.split(out.strip())
    assert cmd[:3] == ["vllm", "serve", "MBZUAI/BiMediX2-70B-hf"] and arg(cmd, "--tensor-parallel-size") == "8"
    assert template.read_text(encoding="utf-8") == BIMEDIX2_LLAMA3.jinja
    assert "s3cret" not in out + err and "VLLM_API_KEY" in err
    assert main(["serve-vllm", "--model", "x/y", "--template-file", str(template), "--dry-run"]) == 0
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(json.dumps({"model_type": "llava_llama"}))
    assert main(["serve-vllm", "--model", str(tmp_path / "llava"), "--dry-run"]) == 2


def test_phi3_v_checkpoint_gets_its_own_template_and_remote_code_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bimedix2.model.formats.phi3_v import PHI3_VISION
    from bimedix2.model.tiny_phi3_v import save_tiny_phi3_v

    ckpt = save_tiny_phi3_v(tmp_path / "bimedix2-4b")
    template = tmp_path / "t.jinja"
    argv = ["serve-vllm", "--model", str(ckpt), "--template-file", str(template), "--dry-run"]
    assert main(argv) == 0
    cmd = shlex.split(capsys.readouterr().out.strip())
    assert template.read_text(encoding="utf-8") == PHI3_VISION.jinja
    assert "--trust-remote-code" not in cmd
    assert main([*argv, "--trust-remote-code"]) == 0
    assert "--trust-remote-code" in shlex.split(capsys.readouterr().out.strip())
    assert main([*argv, "--chat-template", "bimedix2-llama3"]) == 0
    assert template.read_text(encoding="utf-8") == BIMEDIX2_LLAMA3.jinja
    assert main([*argv, "--chat-template", "nope"]) == 2
