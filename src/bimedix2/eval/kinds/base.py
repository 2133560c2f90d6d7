"""The interface of an evaluation kind, and the read -> prompt -> generate -> score -> aggregate template.

A kind is one class: `run` turns a task of that kind into its results entry, `tables` and
`radar_axes` show those entries in reports. Kinds that generate answers with the model
subclass `GenerationKind` and fill in its steps; the caching, batching and writing of
`<task>/scored.jsonl` are done for them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import ConfigError
from ...types import GenParams, Message
from ..bootstrap import Resampling
from ..datasets import EvalSample
from ..results import Generator, SampleCache, generate_cached, write_jsonl
from ..spec import NoOptions, RunConfig, TaskSpec
from ..tables import ModelResults, Table


@dataclass(frozen=True)
class TaskRun:
    """One task being run: its definition, the run-wide settings and its output folder."""

    spec: TaskSpec
    cfg: RunConfig

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def options(self) -> Any:
        """The kind's typed options from the task YAML."""
        return self.spec.options

    @property
    def dir(self) -> Path:
        """`<out>/<task>/`: predictions, scored rows and any caches of this task."""
        return self.cfg.out_dir / self.spec.name

    def data_path(self) -> Path | None:
        """The path given with `--data TASK=PATH`, if any."""
        return self.cfg.data_path(self.spec.name)

    def gen_params(self) -> GenParams:
        """The task's decoding settings with the run's --max-new-tokens and seed."""
        return self.spec.gen_params(
            max_new_tokens=self.cfg.max_new_tokens, seed=self.spec.generation.get("seed", self.cfg.seed)
        )


class EvalKind(ABC):
    """One evaluation kind (the `kind:` of a task YAML). Register it with `@register_kind(NAME, ...)`."""

    names: ClassVar[tuple[str, ...]] = ()  # set by register_kind
    Options: ClassVar[type] = NoOptions  # frozen dataclass of the kind's own task-YAML keys
    rank: ClassVar[int] = 100  # where its tables and radar axes go in a report (lower first)

    def needs_engine(self, cfg: RunConfig) -> bool:
        """Whether a run of this kind needs the model loaded in-process."""
        return True

    @abstractmethod
    def run(self, task: TaskRun, engine: Generator | None) -> dict[str, Any]:
        """Run the task; the results entry ({"metrics": ..., "n": ..., ...}); writes `<task>/scored.jsonl`."""

    def resampling(self, entry: Mapping[str, Any], rows: list[dict[str, Any]]) -> Resampling | None:
        """How this kind's metrics are recomputed from `rows` (its `scored.jsonl`, or a subset of it) for
        bootstrap intervals and paired comparisons; None when it has no per-sample scores to resample.
        `entry` is the task's results entry (its protocol, metrics)."""
        return None

    def tables(self, results: Sequence[ModelResults]) -> list[Table]:
        """Report tables over every results file (each holding only this kind's entries); [] when empty."""
        return []

    def radar_axes(self, results: ModelResults) -> list[tuple[str, float]]:
        """(axis name, value 0-100) pairs this kind adds to the radar chart for one results file."""
        return []


class GenerationKind(EvalKind):
    """A kind whose answers the model generates: read, prompt, generate (cached), score, aggregate.

    With `--endpoint` the same conversations are sent to an OpenAI-compatible endpoint instead
    (`eval.endpoint`), cached and resumed the same way; no model is loaded here.
    """

    def needs_engine(self, cfg: RunConfig) -> bool:
        return not cfg.remote

    def load_scorers(self, task: TaskRun) -> Any:
        """Whatever `score` needs (models, a judge), loaded before generating so a bad setting fails first."""
        return None

    @abstractmethod
    def read(self, task: TaskRun) -> list[EvalSample]:
        """The task's samples (after --limit)."""

    @abstractmethod
    def prompt(self, task: TaskRun, sample: EvalSample) -> list[Message]:
        """The conversation the model answers for one sample."""

    @abstractmethod
    def score(
        self, task: TaskRun, samples: list[EvalSample], predictions: dict[str, str], scorers: Any
    ) -> list[dict[str, Any]]:
        """One row per sample (written to `<task>/scored.jsonl`)."""

    @abstractmethod
    def aggregate(self, task: TaskRun, samples: list[EvalSample], rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The results entry from the scored rows."""

    def generate(self, task: TaskRun, engine: Generator | None, samples: list[EvalSample]) -> dict[str, str]:
        """{sample id: prediction}, resumed from and appended to `<task>/predictions.jsonl`."""
        params = task.gen_params()
        items = [(s.id, self.prompt(task, s)) for s in samples]
        return generate_predictions(task, engine, items, params, task.spec.prompt)

    def run(self, task: TaskRun, engine: Generator | None) -> dict[str, Any]:
        if engine is None and not task.cfg.remote:
            raise ConfigError(f"task {task.name} needs a model to generate answers")
        scorers = self.load_scorers(task)
        samples = self.read(task)
        predictions = self.generate(task, engine, samples)
        rows = self.score(task, samples, predictions, scorers)
        write_jsonl(task.dir / "scored.jsonl", rows)
        entry = self.aggregate(task, samples, rows)
        if task.cfg.remote:
            from ..endpoint import endpoint_info

            entry = {**entry, "generation": endpoint_info(task.cfg, task.gen_params())}
        return entry


def generate_predictions(
    task: TaskRun,
    engine: Generator | None,
    items: Sequence[tuple[str, list[Message]]],
    params: GenParams,
    prompt: str,
) -> dict[str, str]:
    """{sample id: reply} for (id, conversation) items, in-process or through `--endpoint`, resumed from
    and appended to `<task>/predictions.jsonl` (whose fingerprint names the model, prompt and settings)."""
    if task.cfg.remote:
        from ..endpoint import cache_key, generate_remote

        cache = SampleCache(task.dir / "predictions.jsonl", cache_key(task.cfg, task.name, prompt, params))
        return generate_remote(task.cfg, task.name, items, params, cache, desc=task.name)
    if engine is None:
        raise ConfigError(f"task {task.name} needs a model to generate answers")
    key = {"model": task.cfg.model, "task": task.name, "prompt": prompt, "params": asdict(params)}
    cache = SampleCache(task.dir / "predictions.jsonl", key)
    return generate_cached(engine, items, params, cache, task.cfg.batch_size, desc=task.name)
