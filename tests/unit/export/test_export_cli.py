"""`bimedix2 export gguf`: flags derived from `ExportGgufOptions`, errors as exit status 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bimedix2.cli import build_parser, main
from bimedix2.commands.derive import dataclass_from_args
from bimedix2.commands.export import ExportGgufOptions


def test_every_option_field_is_a_flag_with_its_default() -> None:
    args = build_parser().parse_args(["export", "gguf", "SRC", "OUT"])
    assert dataclass_from_args(ExportGgufOptions, args) == ExportGgufOptions()
    args = build_parser().parse_args(["export", "gguf", "SRC", "OUT", "--quant", "q8_0", "--force", "--threads", "2"])
    options = dataclass_from_args(ExportGgufOptions, args)
    assert (options.quant, options.force, options.threads) == ("q8_0", True, 2)
    flags = {flag for action in _gguf_parser()._actions for flag in action.option_strings}
    assert {"--" + fld.name.replace("_", "-") for fld in dataclasses.fields(ExportGgufOptions)} <= flags


def _gguf_parser():  # noqa: ANN202
    export = build_parser()._subparsers._group_actions[0].choices["export"]
    return export._subparsers._group_actions[0].choices["gguf"]


def test_cli_exports_and_reports(tiny_causal_lm_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["export", "gguf", str(tiny_causal_lm_path), str(out), "--quant", "F16", "--name", "tiny"]) == 0
    printed = capsys.readouterr()
    assert f"wrote {out / 'bimedix2' / 'tiny-GGUF' / 'tiny-F16.gguf'}" in printed.out
    assert "Research use only" in printed.err
    assert (out / "Modelfile").is_file() and (out / "export.json").is_file()


def test_cli_errors_exit_2(tiny_causal_lm_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "gguf", str(tiny_causal_lm_path), str(tmp_path / "x"), "--quant", "Q3_X"]) == 2
    assert "Available: F32, F16, Q8_0" in capsys.readouterr().err
    assert main(["export", "gguf", str(tmp_path / "missing"), str(tmp_path / "y")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
