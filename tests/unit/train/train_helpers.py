"""Helpers for the training tests: shipped tiny recipes pointed at the tiny models and fixtures."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).parents[3]
FIXTURES = Path(__file__).parent / "fixtures"


def tiny_config(recipe: str, model_path: Path | None, out: Path, *overrides: str):  # noqa: ANN201 - TrainConfig
    """A shipped recipe with train.output_dir and repo-relative data paths made absolute.

    `model_path` replaces the recipe's model (path, or the parts it composes); None keeps the
    recipe's model section and lets `overrides` name it.
    """
    from bimedix2.config import load_config
    from bimedix2.train.config import TrainConfig

    path = REPO / "configs" / "train" / recipe
    data = load_config(path, TrainConfig).data.train
    absolute = "[" + ", ".join(str(REPO / p) for p in data) + "]"
    base = [f"train.output_dir={out}", f"data.train={absolute}"]
    if model_path is not None:
        base += [f"model.path={model_path}", "model.language_model=null", "model.vision_tower=null"]
    return load_config(path, TrainConfig, [*base, *overrides])


def composed_config(recipe: str, parts: tuple[Path, Path], out: Path, *overrides: str):  # noqa: ANN201
    """A shipped recipe composing its model from a tiny causal LM and a tiny CLIP tower (`parts`)."""
    llm, tower = parts
    compose = ["model.path=null", "model.format=auto", f"model.language_model={llm}", f"model.vision_tower={tower}"]
    return tiny_config(recipe, None, out, *compose, *overrides)


def write_mixed_records(path: Path, *, images: int, texts: int) -> Path:
    """`images` image records and `texts` text-only records (varied lengths) built from the chat fixture."""
    fixture = [json.loads(line) for line in (FIXTURES / "chat.jsonl").read_text(encoding="utf-8").splitlines()]
    with_image = [r for r in fixture if r.get("image")]
    text_only = [r for r in fixture if not r.get("image")]
    out = []
    for kind, pool, count in (("img", with_image, images), ("txt", text_only, texts)):
        for i in range(count):
            record = json.loads(json.dumps(pool[i % len(pool)]))
            record["id"] = f"{kind}-{i}"
            if "image" in record:
                refs = record["image"] if isinstance(record["image"], list) else [record["image"]]
                absolute = [str(FIXTURES / ref) for ref in refs]
                record["image"] = absolute if isinstance(record["image"], list) else absolute[0]
            record["conversations"][-1]["value"] += " More detail." * i
            out.append(record)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    return path
