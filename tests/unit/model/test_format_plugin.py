"""A format defined here plugs in with one `register_format` line: detected, loaded, offered by the CLI and configs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bimedix2.cli import main
from bimedix2.config import load_config
from bimedix2.errors import ConfigError, ModelLoadError
from bimedix2.model.base import LoadedModel, LoadOptions, config_model_type
from bimedix2.model.formats import detect_format, format_names, get_format, register_format, unregister_format
from bimedix2.model.loader import load_model
from bimedix2.train.config import TrainConfig

REPO = Path(__file__).parents[3]


class WrappedCausalLm:
    """A test format: config.json says model_type 'bimedix2_wrapped'; the real causal LM sits in `inner/`."""

    name = "wrapped"
    summary = "a causal LM wrapped in a directory (test format)"
    quantizations = ("none",)

    def detect(self, path: Path) -> bool:
        return config_model_type(path) == "bimedix2_wrapped"

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        loaded = get_format("causal-lm").load(path / "inner", options)
        return dataclasses.replace(loaded, info=dataclasses.replace(loaded.info, source_format=self.name))


@pytest.fixture()
def wrapped(tiny_causal_lm_path: Path, tmp_path: Path) -> Iterator[Path]:
    register_format(WrappedCausalLm())
    path = tmp_path / "looks-like-llava_llama-hf"  # the name must not matter
    shutil.copytree(tiny_causal_lm_path, path / "inner")
    (path / "config.json").write_text(json.dumps({"model_type": "bimedix2_wrapped"}))
    yield path
    unregister_format("wrapped")


def test_a_registered_format_is_detected_and_loaded(wrapped: Path) -> None:
    assert format_names()[-1] == "wrapped"
    assert detect_format(wrapped) == "wrapped"
    loaded = load_model(str(wrapped), LoadOptions(device="cpu"))
    assert loaded.info.source_format == "wrapped" and loaded.info.name == str(wrapped)
    forced = load_model(str(wrapped), LoadOptions(device="cpu", format="wrapped"))
    assert forced.info.source_format == "wrapped"


def test_a_registered_format_is_a_cli_choice_and_a_config_value(
    wrapped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    choices = "{" + ",".join(("auto", *format_names())) + "}"
    assert choices.endswith(",wrapped}")
    for command in ("ask", "chat", "info"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"--format {choices}" in capsys.readouterr().out, command
    assert main(["info", "--model", str(wrapped), "--format", "wrapped", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source_format"] == "wrapped"
    cfg = load_config(REPO / "configs/train/stage2-tiny.yaml", TrainConfig, ["model.format=wrapped"])
    assert cfg.model.format == "wrapped"


def test_unregistered_names_list_the_available_ones(wrapped: Path) -> None:
    unregister_format("wrapped")
    try:
        with pytest.raises(ModelLoadError, match=r"unknown checkpoint format 'wrapped'. Available: gguf, .*causal-lm"):
            get_format("wrapped")
        with pytest.raises(ModelLoadError, match="no checkpoint format recognises model_type 'bimedix2_wrapped'"):
            load_model(str(wrapped))
        with pytest.raises(ConfigError, match="model.format: unknown checkpoint format 'wrapped'. Available: auto"):
            load_config(REPO / "configs/train/stage2-tiny.yaml", TrainConfig, ["model.format=wrapped"])
        with pytest.raises(SystemExit):
            main(["info", "--model", str(wrapped), "--format", "wrapped"])
    finally:
        register_format(WrappedCausalLm())


def test_registration_order_and_name_clashes() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_format(get_format("gguf"))
    with pytest.raises(ValueError, match="reserved"):
        register_format(_Named("auto"))
    register_format(_Named("first"), before="gguf")
    try:
        assert format_names()[0] == "first"
    finally:
        unregister_format("first")
    with pytest.raises(ValueError, match="no such format"):
        register_format(_Named("x"), before="nope")


@dataclasses.dataclass
class _Named:
    name: str
    summary: str = "never detects anything"
    quantizations: tuple[str, ...] = ("none",)

    def detect(self, path: Path) -> bool:
        return False

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        raise NotImplementedError
