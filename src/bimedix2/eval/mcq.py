"""lm-evaluation-harness plumbing for the medical MCQ kind (paper Table 2).

Our local JSONL files (`<data>/<lang>/<dataset>.jsonl`, records `{"id", "question",
"options": {"A": ...} | [...], "answer": "A" | index}`) are rewritten into one lm-eval task YAML
per (dataset, language) under `<out>/mcq/lm_eval_tasks/`, then run offline with
`lm_eval.simple_evaluate` (`--include_path` in CLI terms): log-likelihood of each option letter
after the question, accuracy = `acc`. The model is our checkpoint through lm-eval's `hf` backend
(the model our loader already loaded, wrapped in `HFLM`, so every format works and a LLaVA
checkpoint is scored text-only; or a checkpoint path) or an OpenAI-compatible completions
endpoint (`local-completions`: token-id prompts split with the served model's tokenizer, scored from
echoed prompt logprobs; the endpoint is checked for them before any scoring).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, EvalDataError
from ..fileio import atomic_write_jsonl, atomic_write_text
from .datasets import read_jsonl
from .results import fingerprint
from .spec import RunConfig

LETTERS = "ABCDEFGHIJ"
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
PROMPTS = {
    "en": "{question}\n{options}\nAnswer:",
    "ar": "{question}\n{options}\nالإجابة:",
}


def _options(record: dict[str, Any], where: str) -> list[str]:
    options = record.get("options")
    if isinstance(options, dict):
        keys = sorted(options)
        if keys != list(LETTERS[: len(keys)]):
            raise EvalDataError(f"{where}: option keys must be A, B, C...; got {keys}")
        return [str(options[k]) for k in keys]
    if isinstance(options, list) and options:
        return [str(o) for o in options]
    raise EvalDataError(f"{where}: missing or empty field 'options'")


def _gold(record: dict[str, Any], n: int, where: str) -> int:
    answer = record.get("answer")
    if isinstance(answer, int) and 0 <= answer < n:
        return answer
    if isinstance(answer, str) and len(answer.strip()) == 1 and LETTERS.find(answer.strip().upper()) in range(n):
        return LETTERS.index(answer.strip().upper())
    raise EvalDataError(f"{where}: answer {answer!r} is not an option letter or index among {n} options")


def prepare_docs(source: Path, target: Path, language: str) -> int:
    """Rewrite one MCQ JSONL into lm-eval docs {query, choices, gold}; returns the count."""
    rows = []
    for lineno, rec in read_jsonl(source):
        where = f"{source}:{lineno}"
        if not str(rec.get("question", "")).strip():
            raise EvalDataError(f"{where}: missing or empty field 'question'")
        options = _options(rec, where)
        lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        rows.append(
            {
                "id": str(rec.get("id", lineno)),
                "query": PROMPTS[language].format(question=rec["question"].strip(), options=lines),
                "choices": [f" {LETTERS[i]}" for i in range(len(options))],
                "gold": _gold(rec, len(options), where),
            }
        )
    return atomic_write_jsonl(target, rows)


def task_yaml(name: str, docs: Path) -> dict[str, Any]:
    """An lm-eval 0.4 task config reading local JSONL (no Hub access)."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(docs.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{query}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def write_tasks(
    datasets: Sequence[str], languages: Sequence[str], data_root: Path, out: Path
) -> dict[str, tuple[str, str]]:
    """Task YAMLs for every (dataset, language) whose file exists; {lm-eval task: (dataset, lang)}."""
    tasks: dict[str, tuple[str, str]] = {}
    wanted = []
    for lang in languages:
        for name in datasets:
            source = data_root / lang / f"{name}.jsonl"
            wanted.append(str(source))
            if not source.is_file():
                continue
            docs = out / "docs" / lang / f"{name}.jsonl"
            prepare_docs(source, docs, lang)
            task = f"bimedix2_{name}_{lang}"
            atomic_write_text(out / f"{task}.yaml", yaml.safe_dump(task_yaml(task, docs), allow_unicode=True))
            tasks[task] = (name, lang)
    if not tasks:
        raise EvalDataError(f"no MCQ files found; provide e.g. {wanted[0]} (layout <data>/<lang>/<dataset>.jsonl)")
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
