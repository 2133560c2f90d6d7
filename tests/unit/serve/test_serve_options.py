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
    assert opts.to_config("some/model", None).model_id == "some/model"  # a hub id (no such local path)
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


def test_network_guard_and_shutdown_flags() -> None:
    args = parse(
        "serve", "--allowed-host", "chat.example", "--allowed-host", "*.lab.example", "--allow-origin",
        "https://app.example", "--shutdown-grace-s", "3", "--keep-alive-s", "2", "--body-timeout-s", "7",
    )  # fmt: skip
    config = serve_options(args).to_config(None, None)
    assert config.allowed_hosts == ("chat.example", "*.lab.example")
    assert config.allowed_origins == ("https://app.example",)
    assert (config.shutdown_grace_s, config.keep_alive_s, config.body_timeout_s) == (3.0, 2.0, 7.0)
    defaults = ServeConfig()
    assert (defaults.shutdown_grace_s, defaults.allowed_hosts, defaults.allowed_origins) == (10.0, (), ())
    with pytest.raises(ConfigError, match="allowed origin 'app.example' must look like https://host"):
        serve_options(parse("serve", "--allow-origin", "app.example")).to_config(None, None)
    with pytest.raises(ConfigError, match="wildcard must look like"):
        serve_options(parse("serve", "--allowed-host", "chat.*.example")).to_config(None, None)


def test_a_local_model_is_served_under_its_directory_name_never_its_path(tmp_path: Path) -> None:
    local = tmp_path / "secret-project" / "BiMediX2-8B-hf"
    local.mkdir(parents=True)
    config = serve_options(parse("serve")).to_config(str(local), None)
    assert config.model_id == "BiMediX2-8B-hf"
    assert serve_options(parse("serve")).to_config("MBZUAI/BiMediX2-8B-hf", None).model_id == "MBZUAI/BiMediX2-8B-hf"
    named = serve_options(parse("serve", "--served-model-name", "tiny")).to_config(str(local), None)
    assert named.model_id == "tiny"
