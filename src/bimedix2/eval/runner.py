"""Run benchmark tasks: read data, generate (batched, cached, resumable), score, write results.

Layout of an output directory:
    results.json                 every task's metrics + the resolved config (merged across runs)
    <task>/predictions.jsonl     per-sample generations (the resume cache)
    <task>/scored.jsonl          per-sample predictions with their scores
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from ..errors import ConfigError, EvalDataError
from ..types import RESEARCH_NOTICE, GenParams, Message, Reply
from .cache import SampleCache
from .datasets import EvalSample, read_dataset
from .tasks import TaskSpec, load_task

RESULTS_FORMAT = "bimedix2-eval-results/1"
CLINICAL_METRICS = ("f1_radgraph", "chexbert_similarity", "bertscore", "radcliq")


class Generator(Protocol):
    """What the runner needs from `bimedix2.engine.Engine`."""

    def generate_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        params: GenParams = ...,
        sample_ids: Sequence[str] | None = ...,
    ) -> list[Reply]: ...


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

    def data_path(self, task: str) -> Path | None:
        value = self.data.get(task)
        return Path(value) if value else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        return out


def seed_everything(seed: int) -> None:
    """Fix Python, NumPy and torch seeds."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # torch is a core dependency; judge-only runs may still avoid importing it
        pass


def generate_cached(
    engine: Generator,
    items: Sequence[tuple[str, list[Message]]],
    params: GenParams,
    cache: SampleCache,
    batch_size: int,
    desc: str,
) -> dict[str, str]:
    """Generate a reply for each (id, conversation) not yet in `cache`, batch by batch."""
    todo = [(sid, conv) for sid, conv in items if sid not in cache]
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="sample") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            replies = engine.generate_batch([conv for _, conv in batch], params, sample_ids=[sid for sid, _ in batch])
            cache.add_many(
                [
                    {
                        "id": sid,
                        "prediction": r.text,
                        "finish_reason": r.finish_reason,
                        "completion_tokens": r.completion_tokens,
                    }
                    for (sid, _), r in zip(batch, replies, strict=True)
                ]
            )
            bar.update(len(batch))
    return {sid: cache.records[sid]["prediction"] for sid, _ in items}


def _gen_params(spec: TaskSpec, cfg: RunConfig) -> GenParams:
    return spec.gen_params(max_new_tokens=cfg.max_new_tokens, seed=spec.generation.get("seed", cfg.seed))


def _samples(spec: TaskSpec, cfg: RunConfig) -> list[EvalSample]:
    samples = read_dataset(spec.dataset_format, cfg.data_path(spec.name), spec.dataset_options, spec.name)
    return samples[: cfg.limit] if cfg.limit else samples


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def _generate_for(
    spec: TaskSpec,
    engine: Generator,
    cfg: RunConfig,
    samples: list[EvalSample],
    build: Callable[[EvalSample], list[Message]],
) -> dict[str, str]:
    params = _gen_params(spec, cfg)
    items = [(s.id, build(s)) for s in samples]
    key = {"model": cfg.model, "task": spec.name, "prompt": spec.prompt, "params": asdict(params)}
    cache = SampleCache(cfg.out_dir / spec.name / "predictions.jsonl", key)
    return generate_cached(engine, items, params, cache, cfg.batch_size, desc=spec.name)


# ------------------------------------------------------------------------------------ VQA
def vqa_prompt(spec: TaskSpec, sample: EvalSample) -> str:
    """The task prompt; MultiMedEval's yes/no instruction when the gold answer is yes/no."""
    from .metrics.vqa import yes_no_instruction

    text = spec.prompt.format(question=sample.text)
    if yes_no_instruction(sample.reference):
        text = "Answer the following question with yes or no. " + text  # MultiMedEval vqa.py format_question
    return text


def run_vqa(spec: TaskSpec, engine: Generator, cfg: RunConfig) -> dict[str, Any]:
    from .metrics.vqa import aggregate, score_improved, score_multimedeval

    samples = _samples(spec, cfg)
    preds = _generate_for(spec, engine, cfg, samples, lambda s: [Message("user", vqa_prompt(spec, s), s.images)])
    rows, strict, improved = [], [], []
    for s in tqdm(samples, desc=f"{spec.name} scoring", unit="sample"):
        a = score_multimedeval(preds[s.id], s.reference)
        b = score_improved(preds[s.id], s.reference, s.meta.get("answer_type"))
        strict.append(a)
        improved.append(b)
        rows.append(
            {
                "id": s.id,
                "question": s.text,
                "reference": s.reference,
                "prediction": preds[s.id],
                "answer_type": s.meta.get("answer_type"),
                "multimedeval": asdict(a),
                "improved": asdict(b),
            }
        )
    _write_jsonl(cfg.out_dir / spec.name / "scored.jsonl", rows)
    return {
        "metrics": {"multimedeval": aggregate(strict), "improved": aggregate(improved)},
        "notes": {
            "multimedeval": "MultiMedEval rules: closed iff gold is yes/no; comparable with the paper's Table 5",
            "improved": "ours: closed iff answer_type is CLOSED; Arabic normalisation; NOT comparable with the paper",
        },
        "n": len(samples),
    }


# --------------------------------------------------------------------- report / summarization
CLINICAL_MODELS = ("radgraph", "chexbert", "bertscore")
UNAVAILABLE = {
    "f1_radgraph": "unavailable: needs the RadGraph model (--radgraph PATH: radgraph package model dir or .tar.gz)",
    "chexbert_similarity": "unavailable: needs the CheXbert checkpoint (--chexbert DIR with chexbert.pth + vocab.txt)",
    "bertscore": "unavailable: needs distilroberta-base (--bertscore DIR)",
    "radcliq": "unavailable: needs all three of --radgraph, --chexbert and --bertscore",
}


@dataclass
class ClinicalScorers:
    """The report-scoring models the user pointed to (each None when not given)."""

    radgraph: Any = None
    chexbert: Any = None
    bertscore: Any = None

    @classmethod
    def load(cls, models: dict[str, str]) -> ClinicalScorers:
        """Load every model named in `models` (a bad path fails here, before any generation)."""
        unknown = sorted(set(models) - set(CLINICAL_MODELS))
        if unknown:
            raise ConfigError(f"unknown report-scoring model(s) {unknown}; known: {', '.join(CLINICAL_MODELS)}")
        out = cls()
        if "radgraph" in models:
            from .metrics.radgraph import RadGraphScorer

            out.radgraph = RadGraphScorer(Path(models["radgraph"]))
        if "chexbert" in models:
            from .metrics.chexbert import CheXbertEncoder

            out.chexbert = CheXbertEncoder(Path(models["chexbert"]))
        if "bertscore" in models:
            from .metrics.bertscore import BERTScore

            out.bertscore = BERTScore(Path(models["bertscore"]))
        return out

    def score(self, predictions: list[str], references: list[str]) -> tuple[dict[str, list[float]], dict[str, str]]:
        """Per-sample clinical metrics that can be computed, and why the others cannot."""
        from .metrics.text import bleu

        per_sample: dict[str, list[float]] = {}
        if self.radgraph is not None:
            per_sample["f1_radgraph"] = self.radgraph.f1(predictions, references)
        if self.chexbert is not None:
            per_sample["chexbert_similarity"] = self.chexbert.similarity(predictions, references)
        rescaled: list[float] = []
        if self.bertscore is not None:
            per_sample["bertscore"], rescaled = self.bertscore.f1(predictions, references)
        if self.radgraph is not None and self.chexbert is not None and self.bertscore is not None:
            from .metrics.radcliq import radcliq_v1

            bleu2 = [bleu(p, r, 2) for p, r in zip(predictions, references, strict=True)]
            per_sample["radcliq"] = radcliq_v1(
                per_sample["f1_radgraph"], rescaled, per_sample["chexbert_similarity"], bleu2
            )
        return per_sample, {k: why for k, why in UNAVAILABLE.items() if k not in per_sample}


def run_text_generation(spec: TaskSpec, engine: Generator, cfg: RunConfig) -> dict[str, Any]:
    from .metrics.text import aggregate_text, score_text

    scorers = ClinicalScorers.load(cfg.clinical_models)  # fail before generating
    samples = _samples(spec, cfg)

    def build(s: EvalSample) -> list[Message]:
        return [Message("user", spec.prompt.format(question=s.text), s.images)]

    preds = _generate_for(spec, engine, cfg, samples, build)
    rows, scores = [], []
    for s in tqdm(samples, desc=f"{spec.name} scoring", unit="sample"):
        sc = score_text(preds[s.id], s.reference)
        scores.append(sc)
        rows.append({"id": s.id, "reference": s.reference, "prediction": preds[s.id], "n_images": len(s.images), **sc})
    clinical, unavailable = scorers.score([r["prediction"] for r in rows], [r["reference"] for r in rows])
    metrics: dict[str, Any] = {**aggregate_text(scores), **{name: None for name in CLINICAL_METRICS}}
    for name, values in clinical.items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
        metrics[name] = sum(values) / len(values) if values else None
    _write_jsonl(cfg.out_dir / spec.name / "scored.jsonl", rows)
    return {"metrics": metrics, "unavailable": unavailable, "n": len(samples)}


# ------------------------------------------------------------------------------- dispatch
def run_task(spec: TaskSpec, engine: Generator | None, cfg: RunConfig) -> dict[str, Any]:
    """Run one task and return its result entry."""
    if spec.kind in ("vqa", "report", "summarization", "mbench", "uphill") and engine is None:
        raise ConfigError(f"task {spec.name} needs a model to generate answers")
    if spec.kind == "vqa":
        result = run_vqa(spec, engine, cfg)
    elif spec.kind in ("report", "summarization"):
        result = run_text_generation(spec, engine, cfg)
    elif spec.kind == "mcq":
        from .mcq import run_mcq

        result = run_mcq(spec, cfg, engine)
    elif spec.kind == "mbench":
        from .judge import run_mbench

        result = run_mbench(spec, engine, cfg)
    elif spec.kind == "uphill":
        from .judge import run_uphill

        result = run_uphill(spec, engine, cfg)
    else:  # pragma: no cover - load_task validates kinds
        raise ConfigError(f"unknown task kind {spec.kind}")
    return {"kind": spec.kind, "title": spec.title, **result, "predictions": f"{spec.name}/scored.jsonl"}


def check_data(specs: Sequence[TaskSpec], cfg: RunConfig) -> None:
    """Fail before any model loads when a task's data path is missing."""
    for spec in specs:
        path = cfg.data_path(spec.name)
        if path is None:
            raise EvalDataError(f"task {spec.name!r} needs its data: pass --data {spec.name}=PATH")
        if not path.exists():
            raise EvalDataError(f"task {spec.name!r}: data path {path} does not exist; provide the dataset there")


def run_eval(task_names: Sequence[str], engine: Generator | None, cfg: RunConfig) -> Path:
    """Run tasks in order; merge their entries into `<out>/results.json`; return its path."""
    specs = [load_task(name) for name in task_names]
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    results_path = cfg.out_dir / "results.json"
    results = load_results(results_path) if results_path.exists() else None
    if results is not None and results.get("model") != cfg.model:
        raise EvalDataError(
            f"{results_path} holds results of model {results.get('model')!r}, not {cfg.model!r}; use another --out"
        )
    results = results or {
        "format": RESULTS_FORMAT,
        "notice": RESEARCH_NOTICE,
        "model": cfg.model,
        "tasks": {},
        "config": {},
    }
    results["label"] = cfg.label or results.get("label") or cfg.model
    for spec in specs:
        started = time.time()
        entry = run_task(spec, engine, cfg)
        entry["seconds"] = round(time.time() - started, 2)
        results["tasks"][spec.name] = entry
        results["config"][spec.name] = {"run": cfg.as_dict(), "task": spec.as_dict()}
        save_results(results, results_path)  # after every task: a later failure loses nothing
    return results_path


def save_results(results: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)


def load_results(path: Path) -> dict[str, Any]:
    """A results file (ours or the shipped reference), checked for its format tag."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalDataError(f"results file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT or "tasks" not in data:
        raise EvalDataError(f"{path}: not a bimedix2 eval results file (format {RESULTS_FORMAT!r})")
    return data
