"""Options derived from a config dataclass: types, choices, defaults, precedence, errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from bimedix2.commands.derive import add_dataclass_options, dataclass_from_args, opt
from bimedix2.errors import ConfigError


@dataclass(frozen=True)
class Options:
    port: int = field(default=8000, metadata=opt("port to bind"))
    rate: float = field(default=0.5, metadata=opt("a rate", aliases=("-r",)))
    mode: Literal["fast", "exact"] = field(default="exact", metadata=opt("how"))
    steer: bool = field(default=False, metadata=opt("steer the language"))
    dirs: tuple[Path, ...] = field(default=(), metadata=opt("allowed dirs", flag="--allow-dir"))
    name: str | None = field(default=None, metadata=opt("a name"))
    internal: int = 3  # no `opt`: not a flag


def _parse(argv: list[str], **kwargs) -> Options:
    parser = argparse.ArgumentParser()
    add_dataclass_options(parser, Options)
    return dataclass_from_args(Options, parser.parse_args(argv), **kwargs)


def test_defaults_come_from_the_dataclass_only() -> None:
    assert _parse([]) == Options()


def test_flags_are_typed_and_converted() -> None:
    got = _parse(["--port", "9000", "-r", "2", "--mode", "fast", "--steer", "--allow-dir", "a", "--allow-dir", "b"])
    assert got == Options(port=9000, rate=2.0, mode="fast", steer=True, dirs=(Path("a"), Path("b")))
    assert _parse(["--no-steer"], base={"steer": True}).steer is False


def test_precedence_flag_over_base_over_default() -> None:
    assert _parse([], base={"port": 1234}).port == 1234
    assert _parse(["--port", "5"], base={"port": 1234}).port == 5
    assert _parse([], extra={"internal": 7}).internal == 7


def test_bad_values_name_the_option() -> None:
    with pytest.raises(SystemExit):
        _parse(["--mode", "slow"])
    with pytest.raises(ConfigError, match="port"):
        _parse([], base={"port": "many"})
    with pytest.raises(ConfigError, match="unknown field"):
        _parse([], base={"prot": 1})


def test_help_shows_the_dataclass_default() -> None:
    parser = argparse.ArgumentParser()
    add_dataclass_options(parser, Options)
    text = parser.format_help()
    assert "port to bind (default: 8000)" in text
    assert "--internal" not in text
