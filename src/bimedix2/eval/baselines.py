"""Baselines as first-class models: a YAML file naming how each comparison model is evaluated.

`configs/eval/baselines.yaml` lists the models the papers' tables compare (GPT-4o, LLaVA-Med,
MiniGPT-Med, Med42, ...), each either loaded here (`model:`) or generating through an
OpenAI-compatible endpoint (`endpoint:`, `endpoint_model:`, `key_env:`), with its tasks and the
paper's column name. `run_baselines` evaluates each one with the same machinery as `eval run`
(`runner.run_eval`): one results folder per model, `<out>/<name>/`, resumable by rerunning.

File layout (every key checked; an unknown or missing one is an error naming the entry):

    tasks: [vqa-rad, slake]          # default tasks of every model (optional)
    data: {vqa-rad: /data/vqa-rad}   # where each task's data lives (shared by all models)
    run: {max_new_tokens: 64}        # eval-run settings for every model (RunConfig fields)
    models:
      - name: llava-med-v1.5         # folder name under --out
        column: LLaVA-Med            # the paper's column name (the report's label)
        endpoint: http://127.0.0.1:8000/v1
        endpoint_model: microsoft/llava-med-v1.5-mistral-7b
        serve: "vllm serve microsoft/llava-med-v1.5-mistral-7b ..."   # how to serve it (shown on errors)
        tasks: [vqa-rad]             # this model's tasks (default: the file's)
        run: {endpoint_concurrency: 32}   # over the file's `run`
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import from_dict, load_yaml
from ..errors import BiMediX2Error, ConfigError
from .results import Generator
from .spec import ENDPOINT_KEY_ENV, RunConfig

__all__ = [
    "RUN_KEYS",
    "Baseline",
    "BaselineOutcome",
    "BaselinesFile",
    "LoadSettings",
    "load_baselines",
    "plan_runs",
    "run_baselines",
]

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# RunConfig fields an entry's `run:` may set; identity, data and output are the file's and the entry's own
RUN_KEYS = tuple(
    f.name
    for f in dataclasses.fields(RunConfig)
    if f.name not in {"out_dir", "model", "label", "data", "endpoint", "endpoint_model", "endpoint_key_env"}
)


@dataclass(frozen=True)
class LoadSettings:
    """How an in-process (`model:`) baseline is loaded: the `eval run` model and engine flags."""

    engine: str = "auto"
    format: str = "auto"
    template: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    vision_tower: str | None = None
    image_aspect_ratio: str | None = None
    trust_remote_code: bool = False
    mmproj: str | None = None
    ctx_size: int = 4096
    threads: int = 0


@dataclass(frozen=True)
class Baseline:
    """One comparison model: where its answers come from, its tasks and its column in the paper's tables."""

    name: str
    column: str
    tasks: tuple[str, ...] = ()
    model: str | None = None
    endpoint: str | None = None
    endpoint_model: str | None = None
    key_env: str = ENDPOINT_KEY_ENV
    serve: str = ""  # the command that serves an endpoint model (documentation, shown when it cannot be reached)
    paper: str = ""  # where the papers report it (e.g. "BiMediX2 Tables 5, 6")
    notes: str = ""
    load: LoadSettings = field(default_factory=LoadSettings)
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        """Whether its answers come from an endpoint."""
        return self.endpoint is not None

    def validate(self) -> None:
        """The entry's own rules (called by `config.from_dict`)."""
        if not NAME_RE.fullmatch(self.name):
            raise ConfigError(f"name {self.name!r}: letters, digits, '.', '_' and '-' only (it names a folder)")
        if not self.column.strip():
            raise ConfigError("column: must name the model's column in the report (the paper's column name)")
        if (self.model is None) == (self.endpoint is None):
            raise ConfigError("give exactly one of `model:` (loaded here) or `endpoint:` (an OpenAI-compatible URL)")
        if self.endpoint is not None:
            if not self.endpoint.startswith(("http://", "https://")):
                raise ConfigError(f"endpoint: must be an http:// or https:// base URL (.../v1), got {self.endpoint!r}")
            if not self.endpoint_model:
                raise ConfigError("endpoint_model: required with endpoint (the model name the endpoint serves)")
            if self.load != LoadSettings():
                raise ConfigError("load: only applies to a `model:` loaded here, not to an endpoint")
        else:
            if self.endpoint_model:
                raise ConfigError("endpoint_model: only used with endpoint")
            if self.key_env != ENDPOINT_KEY_ENV:
                raise ConfigError("key_env: only used with endpoint")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.key_env):
            raise ConfigError("key_env: must be the NAME of an environment variable holding the key, never the key")
        check_run_keys(self.run, "run")


@dataclass(frozen=True)
class BaselinesFile:
    """A whole baselines file: shared tasks, data and run settings, and the models."""

    models: tuple[Baseline, ...]
    tasks: tuple[str, ...] = ()
    data: dict[str, str] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def get(self, name: str) -> Baseline:
        """The entry called `name`; "Available: ..." otherwise."""
        for baseline in self.models:
            if baseline.name == name:
                return baseline
        raise ConfigError(f"{self.source}: no model named {name!r}. Available: {', '.join(self.names())}")

    def names(self) -> list[str]:
        """Every entry's name, in file order."""
        return [b.name for b in self.models]

    def tasks_of(self, baseline: Baseline) -> tuple[str, ...]:
        """The entry's tasks, else the file's."""
        return baseline.tasks or self.tasks


def check_run_keys(run: Mapping[str, Any], where: str) -> None:
    """`run:` keys must be RunConfig settings (types are checked when the run's config is built)."""
    unknown = sorted(set(run) - set(RUN_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown run setting (known: {', '.join(RUN_KEYS)})")


def load_baselines(path: str | Path) -> BaselinesFile:
    """Read and validate a baselines YAML file; errors name the file and the entry (`models[i] (name)`)."""
    from .tasks import load_task

    path = Path(path)
    raw = load_yaml(path)
    known = {"models", "tasks", "data", "run"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown top-level key (known: {', '.join(sorted(known))})")
    entries = raw.get("models")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: models: a non-empty list of model entries is required")
    top = from_dict(BaselinesFile, {"models": [], **{k: v for k, v in raw.items() if k != "models"}})
    try:
        check_run_keys(top.run, "run")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    models = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        where = f"models[{i}]" + (f" ({name})" if name else "")
        try:
            models.append(from_dict(Baseline, entry, prefix=where))
        except ConfigError as exc:
            text = str(exc)
            raise ConfigError(f"{path}: {text if text.startswith(where) else f'{where}: {text}'}") from None
    baselines = BaselinesFile(tuple(models), top.tasks, top.data, top.run, str(path))
    seen: dict[tuple[str, str], str] = {}
    for i, b in enumerate(baselines.models):
        for key, value in (("name", b.name), ("column", b.column)):
            if (key, value) in seen:
                raise ConfigError(f"{path}: models[{i}] ({b.name}): {key} {value!r} repeats {seen[(key, value)]}")
            seen[(key, value)] = f"models[{i}]"
        tasks = baselines.tasks_of(b)
        if not tasks:
            raise ConfigError(f"{path}: models[{i}] ({b.name}): tasks: none given here nor at the top level")
        for task in tasks:
            try:
                load_task(task)
            except ConfigError as exc:
                raise ConfigError(f"{path}: models[{i}] ({b.name}): tasks: {exc}") from None
    return baselines


def plan_runs(
    baselines: BaselinesFile,
    out: Path,
    only: Sequence[str] = (),
    data: Mapping[str, str] | None = None,
    models: Mapping[str, str] | None = None,
    endpoints: Mapping[str, str] | None = None,
    run: Mapping[str, Any] | None = None,
) -> list[tuple[Baseline, RunConfig]]:
    """The selected entries (all, or `only` in that order) with their run configs, `<out>/<name>/` each.

    `data` merges over the file's data; `models` / `endpoints` ({name: value}) replace an entry's
    `model:` / `endpoint:` (e.g. the host a served model runs on today); `run` settings win over the
    file's and every entry's (e.g. today's judge URL).
    """
    check_run_keys(run or {}, "--run")
    for flag, given in (("--model", models or {}), ("--endpoint", endpoints or {})):
        for name in given:
            entry = baselines.get(name)
            if (flag == "--model") != (entry.model is not None):
                kind = "is loaded here (model:)" if entry.model is not None else "is served (endpoint:)"
                raise ConfigError(f"{flag} {name}=...: model {name!r} {kind}")
    chosen = [baselines.get(n) for n in dict.fromkeys(only)] if only else list(baselines.models)
    plans = []
    for b in chosen:
        b = dataclasses.replace(
            b,
            model=(models or {}).get(b.name, b.model),
            endpoint=(endpoints or {}).get(b.name, b.endpoint),
        )
        settings = {**baselines.run, **b.run, **(run or {})}
        try:
            cfg = from_dict(
                RunConfig,
                {
                    **settings,
                    "out_dir": str(out / b.name),
                    "model": b.model or "default",
                    "label": b.column,
                    "data": {**baselines.data, **(data or {})},
                    "endpoint": b.endpoint,
                    "endpoint_model": b.endpoint_model,
                    "endpoint_key_env": b.key_env,
                },
            )
        except ConfigError as exc:
            raise ConfigError(f"{baselines.source}: {b.name}: run: {exc}") from None
        plans.append((b, cfg))
    return plans


@dataclass(frozen=True)
class BaselineOutcome:
    """One model's run: its results file, or the error that stopped it (what finished before is kept)."""

    baseline: Baseline
    out_dir: Path
    results: Path | None = None
    error: str = ""


def run_baselines(
    baselines: BaselinesFile,
    plans: Sequence[tuple[Baseline, RunConfig]],
    make_engine: Callable[[Baseline, RunConfig], Generator],
    keep_going: bool = True,
) -> list[BaselineOutcome]:
    """Evaluate each planned model in turn through `runner.run_eval` (a rerun resumes each folder).

    `make_engine` loads an in-process model; it is called only when one of the model's tasks
    needs it, and the engine is dropped before the next model loads. A model that fails is
    recorded with its error and, with `keep_going`, the next one runs.
    """
    from .kinds import get_kind
    from .runner import check_data, run_eval
    from .tasks import load_task

    outcomes = []
    for baseline, cfg in plans:
        engine: Generator | None = None
        tasks = baselines.tasks_of(baseline)
        try:
            specs = [load_task(t) for t in tasks]
            check_data(specs, cfg)
            if baseline.remote and baseline.key_env != ENDPOINT_KEY_ENV and baseline.key_env not in os.environ:
                raise ConfigError(f"{baseline.name}: its API key variable ${baseline.key_env} (key_env) is not set")
            if any(get_kind(s.kind).needs_engine(cfg) for s in specs):
                if baseline.remote:
                    raise ConfigError(f"{baseline.name}: a task needs a model loaded here, but it is an endpoint")
                engine = make_engine(baseline, cfg)
            path = run_eval(list(tasks), engine, cfg)
            outcomes.append(BaselineOutcome(baseline, cfg.out_dir, results=path))
        except BiMediX2Error as exc:
            hint = f" (it is served with: {baseline.serve})" if baseline.remote and baseline.serve else ""
            outcomes.append(BaselineOutcome(baseline, cfg.out_dir, error=f"{exc}{hint}"))
            if not keep_going:
                break
        del engine  # the model's memory is freed before the next one loads
    return outcomes
