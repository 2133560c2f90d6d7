"""`bimedix2 serve` / `serve-vllm` options: derived from the dataclasses, every flag spelling kept, YAML base."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from bimedix2.cli import build_parser, main
from bimedix2.commands.serve import NetworkOptions, ServeOptions, VllmFlags, serve_options
from bimedix2.errors import ConfigError
from bimedix2.serve.config import ServeConfig
from bimedix2.serve.vllm import VllmOptions
from bimedix2.types import GenParams


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def without_created(config: ServeConfig) -> ServeConfig:
    return dataclasses.replace(config, created=0)


def test_defaults_are_the_server_configs_own() -> None:
    opts = serve_options(parse("serve"))
    assert opts == ServeOptions()
    assert opts.to_config(None, None) == ServeConfig()
    assert opts.to_config("some/model", None).model_id == "some/model"
    assert ServeConfig().steer_language is GenParams().steer_language
    assert ServeConfig().default_max_tokens == GenParams().max_new_tokens


def test_every_flag_spelling(tmp_path: Path) -> None:
    args = parse(
        "serve", "--host", "0.0.0.0", "--port", "9000", "--api-key", "k", "--served-model-name", "tiny",
        "--max-batch-size", "2", "--max-queue", "3", "--batch-window-s", "0", "--timeout", "10",
        "--max-body-mb", "0.5", "--max-image-mb", "0.25", "--allow-local-images", str(tmp_path),
        "--allow-local-images", str(tmp_path / "b"), "--default-max-tokens", "7", "--no-steer-language",
        "--log-requests",
    )  # fmt: skip
    config = serve_options(args).to_config("ignored", "k")
    assert config == ServeConfig(
        model_id="tiny",
        host="0.0.0.0",
        port=9000,
        api_key="k",
        max_batch_size=2,
        max_queue=3,
        batch_window_s=0.0,
        request_timeout_s=10.0,
        max_body_bytes=512 * 1024,
        max_image_bytes=256 * 1024,
        local_image_dirs=(tmp_path.resolve(), (tmp_path / "b").resolve()),
        default_max_tokens=7,
        steer_language=False,
        log_requests=True,
    )
    assert serve_options(parse("serve", "--steer-language")).steer_language is True


def test_vllm_flags_default_to_vllm_options() -> None:
    flags = VllmFlags()
    defaults = VllmOptions(model="m")
    assert (flags.tensor_parallel_size, flags.max_model_len, flags.vllm_dtype, flags.vllm_arg) == (
        defaults.tensor_parallel_size,
        defaults.max_model_len,
        defaults.dtype,
        defaults.extra_args,
    )
    args = parse("serve-vllm", "--model", "m", "--tp", "4", "--vllm-arg=--enable-prefix-caching", "--dry-run")
    from bimedix2.commands.derive import dataclass_from_args

    got = dataclass_from_args(VllmFlags, args)
    assert (got.tensor_parallel_size, got.vllm_arg, got.dry_run) == (4, ("--enable-prefix-caching",), True)
    assert dataclass_from_args(NetworkOptions, args) == NetworkOptions()


def test_config_file_is_the_base_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("port: 8123\nmax_body_mb: 1\ntimeout: 30\nallow_local_images: [/tmp]\n", encoding="utf-8")
    opts = serve_options(parse("serve", "--config", str(path), "--port", "9000"))
    assert (opts.port, opts.max_body_mb, opts.timeout, opts.allow_local_images) == (9000, 1.0, 30.0, (Path("/tmp"),))
    path.write_text("prot: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"serve.yaml: prot: unknown field"):
        serve_options(parse("serve", "--config", str(path)))
    path.write_text("max_queue: lots\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"serve.yaml: max_queue"):
        serve_options(parse("serve", "--config", str(path)))


def test_refused_values_are_errors_before_loading_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--max-batch-size", "0"]) == 2
    assert "max_batch_size must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--allow-local-images", "/no/such/dir"]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("serve", "--engine", "tgi")
