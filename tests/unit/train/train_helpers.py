"""Helpers for the training tests: shipped tiny recipes pointed at the tiny models and fixtures."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).parents[3]


def tiny_config(recipe: str, model_path: Path, out: Path, *overrides: str):  # noqa: ANN201 - TrainConfig
    """A shipped recipe with model.path, train.output_dir and repo-relative data paths made absolute."""
    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig

    path = REPO / "configs" / "train" / recipe
    data = load_config(path, TrainConfig).data.train
    absolute = "[" + ", ".join(str(REPO / p) for p in data) + "]"
    base = [f"model.path={model_path}", f"train.output_dir={out}", f"data.train={absolute}"]
    return load_config(path, TrainConfig, [*base, *overrides])
