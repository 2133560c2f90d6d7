"""`bimedix2 eval run` options: derived from EvalRunOptions; flag > --config YAML > default; --data merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from bimedix2.cli import build_parser
from bimedix2.commands.eval import EvalRunOptions, run_options
from bimedix2.errors import ConfigError


def _options(argv: list[str]) -> EvalRunOptions:
    return run_options(build_parser().parse_args(["eval", "run", *argv]))


def test_precedence_and_data_merge(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks: [slake, vqa-rad]\nout: o\nbatch_size: 8\nlabel: from-yaml\nmodel: m-yaml\n"
        "data: {slake: /yaml/slake, vqa-rad: /yaml/vqa}\nradgraph: /rg\n",
        encoding="utf-8",
    )
    got = _options(["--config", str(cfg), "--batch-size", "2", "--data", "slake=/flag/slake", "--chexbert", "/cx"])
    assert got.tasks == ("slake", "vqa-rad") and got.out == Path("o") and got.model == "m-yaml"
    assert got.batch_size == 2 and got.label == "from-yaml" and got.seed == 0  # flag > YAML > default
    assert got.data == {"slake": "/flag/slake", "vqa-rad": "/yaml/vqa"}
    run = got.run_config()
    assert run.clinical_models == {"radgraph": "/rg", "chexbert": "/cx"} and run.out_dir == Path("o")
    assert _options(["--config", str(cfg), "uphill", "--model", "m"]).tasks == ("uphill",)
    plain = _options(["slake", "--out", "x", "--limit", "3"])
    assert (plain.batch_size, plain.limit, plain.model, plain.run_config().model) == (4, 3, None, "default")


def test_bad_options_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("tasks: [slake]\nbatch-size: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: batch-size: unknown field \(known here: .*batch_size"):
        _options(["--config", str(cfg), "--out", "x"])
    cfg.write_text("tasks: slake\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="tasks: expected a list"):
        _options(["--config", str(cfg), "--out", "x"])
    with pytest.raises(ConfigError, match="name the tasks"):
        _options(["--out", "x"])
    with pytest.raises(ConfigError, match="--out is required"):
        _options(["slake"])
    with pytest.raises(ConfigError, match="--batch-size must be at least 1"):
        _options(["slake", "--out", "x", "--batch-size", "0"])
    with pytest.raises(ConfigError, match="TASK=PATH"):
        _options(["slake", "--out", "x", "--data", "slake"])
