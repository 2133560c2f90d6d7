"""lm-evaluation-harness plumbing for the medical MCQ kind (paper Table 2).

For each (dataset, language) found under `--data mcq=DIR`, one lm-eval task YAML is written to
`<out>/mcq/lm_eval_tasks/` and all of them run offline with `lm_eval.simple_evaluate`
(`--include_path` in CLI terms); accuracy = lm-eval's `acc`.

* **Paper protocol** (default): MedQA (4 options), MedMCQA, PubMedQA and the six medical MMLU
  subjects are lm-eval's *own* tasks (`medqa_4options`, `medmcqa`, `pubmedqa`, `mmlu_<subject>`):
  our YAML includes the installed lm-eval YAML and only points it at local files
  (`bimedix2.eval.lm_eval_tasks`). Data: a snapshot of the Hub dataset that task loads, in its
  layout (`<lang>/<folder>/`, e.g. `en/medqa/test.json`, `en/mmlu/anatomy/test-*.parquet`), or
  our generic `<lang>/<dataset>.jsonl`, converted into those fields. USMLE has no lm-eval task:
  it is our task with medqa_4options' prompt for its 4-5 options.
* **Toolkit protocol**: generic files use our own prompt (`datasets.mcq.toolkit_query`, an Arabic
  answer label for Arabic); Hub-layout folders still run lm-eval's tasks.

The model is our checkpoint through lm-eval's `hf` backend (the model our loader already loaded,
wrapped in `HFLM`, so every format works and a LLaVA checkpoint is scored text-only; or a checkpoint
path) or an OpenAI-compatible completions endpoint (`local-completions`: token-id prompts split with
the served model's tokenizer, scored from echoed prompt logprobs; the endpoint is checked for them
before any scoring).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, EvalDataError
from ..fileio import atomic_write_jsonl, atomic_write_text
from .datasets.mcq import hub_doc, lettered_query, read_generic, scored_doc, toolkit_query
from .lm_eval_tasks import PAPER_DATASETS, local_splits, override_config, upstream_config, upstream_yaml
from .results import fingerprint
from .spec import RunConfig

DATASET_TITLES = {
    "medqa": "MedQA",
    "medmcqa": "MedMCQA",
    "pubmedqa": "PubMedQA",
    "usmle": "USMLE",
    "mmlu_clinical_knowledge": "Clinical KG",
    "mmlu_college_biology": "C Bio",
    "mmlu_college_medicine": "C Med",
    "mmlu_medical_genetics": "Medical Genetics",
    "mmlu_professional_medicine": "Pro Med",
    "mmlu_anatomy": "Anatomy",
}


@dataclass(frozen=True)
class McqTask:
    """One written lm-eval task: which dataset and language it scores, and with what definition."""

    name: str
    dataset: str
    language: str
    definition: str  # "lm-eval medqa_4options" or "bimedix2 ..." (our own task)
    source: str  # the local data it reads
    config: dict[str, Any] = field(default_factory=dict)  # the task YAML as written

    def info(self) -> dict[str, Any]:
        """What results.json records about the task."""
        return {
            "dataset": self.dataset,
            "language": self.language,
            "definition": self.definition,
            "source": self.source,
            "yaml": self.config,
        }


def own_task_config(name: str, docs: Path) -> dict[str, Any]:
    """An lm-eval task of ours over `scored_doc` rows (rendered query, letter choices, gold index)."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(docs.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{query}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 2.0},
    }


def find_source(data_root: Path, language: str, dataset: str) -> Path | None:
    """A Hub-layout folder (preferred) or a generic `<dataset>.jsonl` for one dataset, or None."""
    entry = PAPER_DATASETS.get(dataset)
    if entry is not None:
        folder = data_root / language / entry.folder
        if folder.is_dir() and (not entry.config_required or (folder / str(entry.config)).is_dir()):
            return folder
    generic = data_root / language / f"{dataset}.jsonl"
    return generic if generic.is_file() else None


def task_config(dataset: str, language: str, source: Path, out: Path, protocol: str) -> McqTask:
    """The task scoring `dataset` in `language` from `source` (see the module docstring for the rules)."""
    name = f"bimedix2_{dataset}_{language}"
    entry = PAPER_DATASETS.get(dataset)
    if source.is_dir():
        if entry is None:
            raise EvalDataError(f"{source}: {dataset} has no lm-eval task to read a folder for; give {source}.jsonl")
        upstream = upstream_config(upstream_yaml(entry))
        config = override_config(entry, name, local_splits(source, entry, upstream), upstream)
        return McqTask(name, dataset, language, f"lm-eval {entry.task}", str(source), config)
    records = read_generic(source)
    docs = out / "docs" / language / f"{dataset}.jsonl"
    if entry is not None and protocol == "paper":
        upstream = upstream_config(upstream_yaml(entry))
        atomic_write_jsonl(docs, [hub_doc(dataset, r, f"{source}: record {r.id}") for r in records])
        config = override_config(entry, name, {upstream["test_split"]: [docs]}, upstream)
        definition = f"lm-eval {entry.task} (generic records in {entry.hub} fields)"
        return McqTask(name, dataset, language, definition, str(source), config)
    if protocol == "paper":  # USMLE: no lm-eval task; medqa_4options' prompt, as many options as the question has
        atomic_write_jsonl(docs, [scored_doc(r, lettered_query(r.question, r.options)) for r in records])
        definition = "bimedix2 (lm-eval medqa_4options' doc_to_text, any number of options)"
    else:
        atomic_write_jsonl(docs, [scored_doc(r, toolkit_query(r, language)) for r in records])
        definition = "bimedix2 toolkit prompt"
    return McqTask(name, dataset, language, definition, str(source), own_task_config(name, docs))


def write_tasks(
    datasets: Sequence[str], languages: Sequence[str], data_root: Path, out: Path, protocol: str = "paper"
) -> dict[str, McqTask]:
    """Task YAMLs under `out` for every (dataset, language) whose data exists; {lm-eval task: McqTask}."""
    tasks: dict[str, McqTask] = {}
    for lang in languages:
        for dataset in datasets:
            source = find_source(data_root, lang, dataset)
            if source is None:
                continue
            task = task_config(dataset, lang, source, out, protocol)
            atomic_write_text(
                out / f"{task.name}.yaml", yaml.safe_dump(task.config, allow_unicode=True, sort_keys=False)
            )
            tasks[task.name] = task
    if not tasks:
        raise EvalDataError(
            f"no MCQ data found under {data_root}: expected <lang>/<dataset>.jsonl files or Hub-layout folders "
            f"such as {data_root / 'en' / 'medqa' / 'test.json'} (datasets: {', '.join(datasets)})"
        )
    return tasks


def lm_eval_model(
    model: str, endpoint: str | None, engine: Any = None, batch_size: int = 4, workdir: Path | None = None
) -> tuple[Any, Any]:
    """What `simple_evaluate` gets as `model` (+ model_args): an endpoint, our loaded model, or a path."""
    if endpoint:
        return "local-completions", endpoint_model_args(model, endpoint, engine, workdir or Path("."))
    if engine is not None:
        # our loader already resolved the format (hf-llava, llava-llama, causal-lm, gguf): hand lm-eval the
        # loaded model; a Llava model scores text-only prompts through its language model
        from lm_eval.models.huggingface import HFLM

        loaded = engine.loaded
        return HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, backend="causal", batch_size=batch_size), ""
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"MCQ through lm-eval's hf backend needs a local checkpoint directory with config.json; got {model!r}"
        )
    return "hf", f"pretrained={path},dtype=float32"


def completions_url(endpoint: str) -> str:
    """`.../v1` (or the full `.../v1/completions`) -> the completions URL lm-eval posts to."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/completions") else f"{url}/completions"


def endpoint_model_args(model: str, endpoint: str, engine: Any, workdir: Path) -> dict[str, Any]:
    """lm-eval `local-completions` arguments: the served model's tokenizer saved locally, requests as token ids.

    lm-eval needs a tokenizer to split each prompt into context and answer tokens; it sends the token
    ids (`tokenized_requests`), so the server scores exactly those tokens, and reads the answer's
    log-probability from the echoed prompt logprobs. `add_bos_token=True` means "the tokenizer's own
    special tokens", which is what the hf backend does by default, so both backends score the same tokens.
    """
    tokenizer_dir = workdir / "endpoint_tokenizer"
    _served_tokenizer(model, engine).save_pretrained(tokenizer_dir)
    url = completions_url(endpoint)
    check_endpoint(url, model, tokenizer_dir)
    return {
        "model": model,
        "base_url": url,
        "tokenizer_backend": "huggingface",
        "tokenizer": str(tokenizer_dir),
        "tokenized_requests": True,
        "add_bos_token": True,
    }


def _served_tokenizer(model: str, engine: Any) -> Any:
    """The tokenizer of the model the endpoint serves: the one bimedix2 loaded, else --model's, offline."""
    if engine is not None:
        return engine.loaded.tokenizer
    from transformers import AutoTokenizer

    path = Path(model).expanduser()
    try:
        if path.is_file() and path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        # a local checkpoint directory, or a Hub id already in the local Hugging Face cache (no download)
        return AutoTokenizer.from_pretrained(str(path) if path.exists() else model, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--mcq-endpoint needs the served model's tokenizer to split prompts into context and answer tokens; "
            f"could not load one offline for --model {model!r} ({exc}). Pass --model as the served checkpoint's "
            "local directory (or .gguf file), or a Hub id whose tokenizer is in the local Hugging Face cache."
        ) from None


def check_endpoint(url: str, model: str, tokenizer_dir: Path) -> None:
    """One request shaped like lm-eval's: the server must echo prompt-token logprobs plus one new token."""
    import httpx
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tokenizer_dir)("Answer: A").input_ids
    payload = {"model": model, "prompt": [ids], "temperature": 0, "max_tokens": 1, "logprobs": 1, "echo": True}
    key = os.environ.get("OPENAI_API_KEY")  # what lm-eval's local-completions sends
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach the MCQ endpoint {url}: {exc}") from None
    if response.status_code != 200:
        raise ConfigError(
            f"the MCQ endpoint {url} refused a scoring request for model {model!r} "
            f"(HTTP {response.status_code}): {response.text[:300]}"
        )
    try:
        logprobs = response.json()["choices"][0]["logprobs"]
        n = len(logprobs["token_logprobs"]), len(logprobs["top_logprobs"])
    except (ValueError, KeyError, IndexError, TypeError):
        n = None
    if n != (len(ids) + 1, len(ids) + 1):
        raise ConfigError(
            f"the MCQ endpoint {url} does not return prompt logprobs: lm-eval's local-completions scores an answer "
            f"from `logprobs.token_logprobs` / `top_logprobs` of the echoed prompt (`echo: true, max_tokens: 1, "
            f"logprobs: 1`), expecting {len(ids) + 1} entries for a {len(ids)}-token prompt; got "
            f"{'none' if n is None else n[0]}. Use a server that supports this (e.g. vLLM), or score without "
            "--mcq-endpoint (lm-eval's hf backend)."
        )


def run_lm_eval(
    tasks: Sequence[str], include_dir: Path, cfg: RunConfig, engine: Any, workdir: Path, num_fewshot: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`lm_eval.simple_evaluate` offline on the task YAMLs in `include_dir`: (its raw output, what scored)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model_type, model_args = lm_eval_model(cfg.model, cfg.mcq_endpoint, engine, cfg.batch_size, workdir)
    scorer = {"model": cfg.model, "endpoint": completions_url(cfg.mcq_endpoint) if cfg.mcq_endpoint else None}
    raw = simple_evaluate(
        model=model_type,
        model_args=model_args or None,
        tasks=sorted(tasks),
        task_manager=TaskManager(include_path=str(include_dir)),
        num_fewshot=num_fewshot,
        batch_size=cfg.batch_size,
        limit=cfg.limit,
        random_seed=cfg.seed,
        numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed,
        fewshot_random_seed=cfg.seed,
        log_samples=True,
        # per-request cache, so an interrupted run resumes; named per scorer, so another model never reuses it
        use_cache=str(workdir / f"lm_eval_cache-{fingerprint(scorer)}"),
        device="cpu" if model_type == "hf" and not _cuda() else None,
    )
    info = {
        "model": model_type if isinstance(model_type, str) else "hf (model loaded by bimedix2)",
        "version": _lm_eval_version(),
        **({"endpoint": scorer["endpoint"], "tokenizer": model_args["tokenizer"]} if cfg.mcq_endpoint else {}),
    }
    return raw, info


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
