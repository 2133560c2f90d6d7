"""Task definitions: one YAML per benchmark in this folder, loaded into frozen `TaskSpec`s."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import ConfigError
from ...types import GenParams

TASK_DIR = Path(__file__).parent
KINDS = ("vqa", "report", "summarization", "mcq", "mbench", "uphill")


@dataclass(frozen=True)
class TaskSpec:
    """A benchmark: how to read it, prompt for it and score it."""

    name: str
    kind: str
    title: str
    dataset_format: str = ""
    dataset_options: dict[str, Any] = field(default_factory=dict)
    prompt: str = "{question}"
    generation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def gen_params(self, **overrides: Any) -> GenParams:
        """Decoding settings: the task's, then any non-None override."""
        values = {**self.generation, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return GenParams(**values)
        except TypeError as exc:
            raise ConfigError(f"task {self.name}: bad generation settings {values} ({exc})") from exc

    def as_dict(self) -> dict[str, Any]:
        """The resolved task definition (written beside the results)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title,
            "dataset": {"format": self.dataset_format, "options": self.dataset_options},
            "prompt": self.prompt,
            "generation": self.generation,
            **self.extra,
            "source": self.source,
        }


def load_task(name_or_path: str) -> TaskSpec:
    """A built-in task by name (see `list_tasks`) or a task YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TASK_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown task {name_or_path!r}: no file {path} (built-in tasks: {', '.join(list_tasks())})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    for key in ("name", "kind"):
        if key not in raw:
            raise ConfigError(f"{path}: missing field {key!r}")
    if raw["kind"] not in KINDS:
        raise ConfigError(f"{path}: kind {raw['kind']!r} is not one of {', '.join(KINDS)}")
    dataset = raw.pop("dataset", {}) or {}
    known = {"name", "kind", "title", "prompt", "generation"}
    return TaskSpec(
        name=raw["name"],
        kind=raw["kind"],
        title=raw.get("title", raw["name"]),
        dataset_format=dataset.get("format", ""),
        dataset_options=dataset.get("options", {}) or {},
        prompt=raw.get("prompt", "{question}"),
        generation=raw.get("generation", {}) or {},
        extra={k: v for k, v in raw.items() if k not in known},
        source=str(path),
    )


def list_tasks() -> list[str]:
    """Names of the built-in tasks."""
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml"))
