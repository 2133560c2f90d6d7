"""Task definitions: one YAML per benchmark in this folder, loaded into frozen, validated `TaskSpec`s.

A task YAML holds the common keys (`name`, `kind`, `title`, `dataset: {format, options}`, `prompt`,
`generation` - the paper protocol's -, and `toolkit: {prompt, generation}`, what `--protocol toolkit`
changes) and its kind's own options (the fields of that kind's `Options` dataclass, e.g.
`languages`, `judge`), all at the top level.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from ...config import from_dict
from ...errors import ConfigError
from ...types import GenParams
from ..datasets import dataset_options
from ..kinds import get_kind
from ..spec import ProtocolOverrides, TaskSpec

TASK_DIR = Path(__file__).parent
COMMON_KEYS = ("name", "kind", "title", "dataset", "prompt", "generation", "toolkit")

__all__ = ["TaskSpec", "builtin_task_kinds", "list_tasks", "load_task"]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a task file is a mapping of keys, got {type(raw).__name__}")
    for key in ("name", "kind"):
        if key not in raw:
            raise ConfigError(f"{path}: missing field {key!r}")
    return raw


def _typed(schema: type, data: Any, where: str, prefix: str = "") -> Any:
    try:
        return from_dict(schema, data, prefix=prefix)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _path_of(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = TASK_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown task {name_or_path!r}: no file {path} (built-in tasks: {', '.join(list_tasks())})")
    return path


def load_task(name_or_path: str) -> TaskSpec:
    """A built-in task by name (see `list_tasks`) or a task YAML file; unknown keys are errors."""
    path = _path_of(name_or_path)
    raw = _read_yaml(path)
    try:
        kind = get_kind(raw["kind"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    option_keys = [k for k in raw if k not in COMMON_KEYS]
    allowed = sorted({*COMMON_KEYS, *kind.Options.__dataclass_fields__})
    for key in option_keys:
        if key not in allowed:
            raise ConfigError(
                f"{path}: unknown key {key!r} for a task of kind {raw['kind']!r} (allowed: {', '.join(allowed)})"
            )
    dataset = raw.get("dataset") or {}
    if not isinstance(dataset, dict) or set(dataset) - {"format", "options"}:
        raise ConfigError(f"{path}: dataset must be a mapping with 'format' and optionally 'options'")
    fmt, options = str(dataset.get("format", "")), dataset.get("options") or {}
    if fmt:
        dataset_options(fmt, options, str(path))
    elif options:
        raise ConfigError(f"{path}: dataset options need a dataset format")
    generation = raw.get("generation") or {}
    _typed(GenParams, generation, str(path), prefix="generation")
    toolkit = _typed(ProtocolOverrides, raw.get("toolkit") or {}, str(path), prefix="toolkit")
    _typed(GenParams, {**generation, **toolkit.generation}, str(path), prefix="toolkit.generation")
    return TaskSpec(
        name=raw["name"],
        kind=raw["kind"],
        title=raw.get("title", raw["name"]),
        dataset_format=fmt,
        dataset_options=options,
        prompt=raw.get("prompt", "{question}"),
        generation=generation,
        options=_typed(kind.Options, {k: raw[k] for k in option_keys}, str(path)),
        source=str(path),
        toolkit=toolkit,
    )


def list_tasks() -> list[str]:
    """Names of the built-in tasks."""
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml"))


@functools.cache
def builtin_task_kinds() -> dict[str, str]:
    """{built-in task name: its kind}: how a results entry without a `kind` tag finds its kind."""
    return {name: load_task(name).kind for name in list_tasks()}
