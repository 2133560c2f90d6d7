"""What a task run is told: the task's definition (`TaskSpec`) and the run-wide settings (`RunConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ..config import config_to_dict
from ..errors import ConfigError
from ..types import GenParams


@dataclass(frozen=True)
class NoOptions:
    """The options of a kind that has none of its own."""


Protocol = Literal["paper", "toolkit"]
PROTOCOLS: tuple[str, ...] = ("paper", "toolkit")
ENDPOINT_KEY_ENV = "BIMEDIX2_ENDPOINT_KEY"  # where --endpoint's API key is read from, unless --endpoint-key-env
ENDPOINT_CONCURRENCY = 8
ENDPOINT_TIMEOUT_S = 600.0
McqMode = Literal["auto", "loglikelihood", "generative"]
MCQ_MODES: tuple[str, ...] = ("auto", "loglikelihood", "generative")
# The released inference code (BiMed-MBench/bimedix_inference.py) samples iff temperature > 0.001.
RELEASED_SAMPLING_MIN_TEMPERATURE = 0.001


@dataclass(frozen=True)
class ProtocolOverrides:
    """A task YAML's `toolkit:` block: what `--protocol toolkit` changes over the paper settings."""

    prompt: str | None = None  # replaces `prompt`
    generation: dict[str, Any] = field(default_factory=dict)  # merged over `generation`


@dataclass(frozen=True)
class TaskSpec:
    """A benchmark: how to read it, prompt for it and score it (one task YAML, validated on load).

    `prompt` and `generation` are the paper protocol's (the released code's settings); the
    `toolkit` overrides apply under `--protocol toolkit`. `for_protocol` resolves one of them.
    """

    name: str
    kind: str
    title: str
    dataset_format: str = ""
    dataset_options: Mapping[str, Any] = field(default_factory=dict)  # as written; the reader types them
    prompt: str = "{question}"
    generation: Mapping[str, Any] = field(default_factory=dict)
    options: Any = field(default_factory=NoOptions)  # the kind's own frozen Options dataclass
    source: str = ""
    toolkit: ProtocolOverrides = field(default_factory=ProtocolOverrides)
    protocol: str = ""  # "" until resolved with `for_protocol`

    def for_protocol(self, protocol: str) -> TaskSpec:
        """This task as run under `protocol`: its prompt and generation settings resolved.

        paper: the YAML's own settings, with sampling decided as the released inference code does
        (temperature > 0.001) unless `do_sample` is given. toolkit: the `toolkit:` overrides on top.
        """
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
        if protocol == "toolkit":
            generation = {**self.generation, **self.toolkit.generation}
            prompt = self.toolkit.prompt if self.toolkit.prompt is not None else self.prompt
            return replace(self, prompt=prompt, generation=generation, protocol=protocol)
        generation = dict(self.generation)
        if "do_sample" not in generation:
            temperature = float(generation.get("temperature", GenParams.temperature))
            generation["do_sample"] = temperature > RELEASED_SAMPLING_MIN_TEMPERATURE
        return replace(self, generation=generation, protocol=protocol)

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
            "dataset": {"format": self.dataset_format, "options": dict(self.dataset_options)},
            "prompt": self.prompt,
            "generation": dict(self.generation),
            **config_to_dict(self.options),
            "toolkit": config_to_dict(self.toolkit),
            "protocol": self.protocol,
            "source": self.source,
        }


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's outputs (written into results.json)."""

    out_dir: Path
    model: str
    label: str = ""
    data: dict[str, str] = field(default_factory=dict)
    batch_size: int = 4
    limit: int | None = None
    seed: int = 0
    max_new_tokens: int | None = None
    mcq_endpoint: str | None = None
    judge_url: str | None = None
    judge_model: str | None = None
    clinical_models: dict[str, str] = field(default_factory=dict)
    # "paper": the released BiMediX2 code's prompts and generation settings for each task;
    # "toolkit": our own improvements (greedy decoding, language steering, tolerant parsing).
    protocol: Protocol = "paper"
    # bootstrap 95% intervals for every metric: resamples (0: none) and their seed (eval.bootstrap)
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    # judged tasks: ask the judge a second time with the two answers' positions exchanged
    judge_swap: bool = False
    # generation through an OpenAI-compatible chat endpoint instead of the model loaded here (eval.endpoint);
    # the API key is read from the environment variable `endpoint_key_env`, never stored
    endpoint: str | None = None
    endpoint_model: str | None = None
    endpoint_key_env: str = ENDPOINT_KEY_ENV
    endpoint_concurrency: int = ENDPOINT_CONCURRENCY
    endpoint_timeout_s: float = ENDPOINT_TIMEOUT_S
    # MCQ scoring: "loglikelihood" (lm-eval), "generative" (the answer letter parsed from a reply), or
    # "auto": generative with --endpoint and no --mcq-endpoint, else loglikelihood
    mcq_mode: McqMode = "auto"

    @property
    def remote(self) -> bool:
        """Whether answers are generated by the endpoint (`endpoint`) rather than in-process."""
        return bool(self.endpoint)

    def identity(self) -> str:
        """The model identity results.json records: `NAME @ URL` for a remote run, else `model`."""
        if self.endpoint:
            return endpoint_identity(self.endpoint, self.endpoint_model or "")
        return self.model

    def resolved_mcq_mode(self) -> str:
        """ "loglikelihood" or "generative" (what "auto" means for this run)."""
        if self.mcq_mode != "auto":
            return self.mcq_mode
        return "generative" if self.endpoint and not self.mcq_endpoint else "loglikelihood"

    def data_path(self, task: str) -> Path | None:
        """Where task `task`'s data lives, if given."""
        value = self.data.get(task)
        return Path(value) if value else None

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        if self.endpoint:
            out["endpoint"] = clean_url(self.endpoint)  # never credentials
        return out


def clean_url(url: str) -> str:
    """The URL without credentials: user:password@ dropped, and the query string and fragment too."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def endpoint_identity(url: str, model: str) -> str:
    """The model identity of a run through an endpoint: `NAME @ URL` (URL without credentials)."""
    return f"{model} @ {clean_url(url)}"
