"""Medical MCQ (paper Table 2) through lm-evaluation-harness.

Our local JSONL files (`<data>/<lang>/<dataset>.jsonl`, records `{"id", "question",
"options": {"A": ...} | [...], "answer": "A" | index}`) are rewritten into one lm-eval task YAML
per (dataset, language) under `<out>/mcq/lm_eval_tasks/`, then run offline with
`lm_eval.simple_evaluate` (`--include_path` in CLI terms): log-likelihood of each option letter
after the question, accuracy = `acc`. The model is our checkpoint through lm-eval's `hf` backend
(the model our loader already loaded, wrapped in `HFLM`, so every format works and a LLaVA
checkpoint is scored text-only; or a checkpoint path) or an OpenAI-compatible completions
endpoint (`local-completions`, which must return prompt logprobs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, EvalDataError
from .datasets import read_jsonl
from .tasks import TaskSpec

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
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


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


def write_tasks(spec: TaskSpec, data_root: Path, out: Path) -> dict[str, tuple[str, str]]:
    """Task YAMLs for every (dataset, language) whose file exists; {lm-eval task: (dataset, lang)}."""
    datasets = spec.extra.get("datasets", list(DATASET_TITLES))
    languages = spec.extra.get("languages", ["en", "ar"])
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
            (out / f"{task}.yaml").write_text(
                yaml.safe_dump(task_yaml(task, docs), allow_unicode=True), encoding="utf-8"
            )
            tasks[task] = (name, lang)
    if not tasks:
        raise EvalDataError(f"no MCQ files found; provide e.g. {wanted[0]} (layout <data>/<lang>/<dataset>.jsonl)")
    return tasks


def lm_eval_model(model: str, endpoint: str | None, engine: Any = None, batch_size: int = 4) -> tuple[Any, str]:
    """What `simple_evaluate` gets as `model` (+ model_args): an endpoint, our loaded model, or a path."""
    if endpoint:
        return "local-completions", f"model={model},base_url={endpoint.rstrip('/')}/completions,tokenizer_backend=None"
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


def run_mcq(spec: TaskSpec, cfg: Any, engine: Any = None) -> dict[str, Any]:
    """Run every available (dataset, language) through lm-eval; accuracy per dataset + averages."""
    data_root = cfg.data_path(spec.name)
    if data_root is None or not data_root.is_dir():
        raise EvalDataError(f"task {spec.name!r} needs --data {spec.name}=DIR holding <lang>/<dataset>.jsonl files")
    out = cfg.out_dir / spec.name / "lm_eval_tasks"
    tasks = write_tasks(spec, data_root, out)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model_type, model_args = lm_eval_model(cfg.model, cfg.mcq_endpoint, engine, cfg.batch_size)
    raw = simple_evaluate(
        model=model_type,
        model_args=model_args or None,
        tasks=sorted(tasks),
        task_manager=TaskManager(include_path=str(out)),
        num_fewshot=spec.extra.get("num_fewshot", 0),
        batch_size=cfg.batch_size,
        limit=cfg.limit,
        random_seed=cfg.seed,
        numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed,
        fewshot_random_seed=cfg.seed,
        log_samples=True,
        use_cache=str(cfg.out_dir / spec.name / "lm_eval_cache"),  # per-request cache: resumes
        device="cpu" if model_type == "hf" and not _cuda() else None,
    )
    accuracy: dict[str, dict[str, float]] = {}
    rows = []
    for task, (name, lang) in tasks.items():
        accuracy.setdefault(lang, {})[name] = float(raw["results"][task]["acc,none"])
        for s in raw.get("samples", {}).get(task, []):
            rows.append(
                {
                    "task": task,
                    "dataset": name,
                    "language": lang,
                    "doc_id": s.get("doc_id"),
                    "target": s.get("target"),
                    "acc": s.get("acc"),
                }
            )
    (cfg.out_dir / spec.name / "scored.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), encoding="utf-8"
    )
    return {
        "metrics": mcq_table(accuracy),
        "n": len(rows),
        "lm_eval": {
            "model": model_type if isinstance(model_type, str) else "hf (model loaded by bimedix2)",
            "version": _lm_eval_version(),
        },
    }


def mcq_table(accuracy: dict[str, dict[str, float]]) -> dict[str, Any]:
    """{lang: {dataset: acc, "average": mean}, "bilingual": {dataset: mean over en/ar}} (fractions)."""
    table: dict[str, Any] = {}
    for lang, per in accuracy.items():
        table[lang] = {**per, "average": sum(per.values()) / len(per)}
    if "en" in accuracy and "ar" in accuracy:
        shared = sorted(set(accuracy["en"]) & set(accuracy["ar"]))
        if shared:
            bi = {d: (accuracy["en"][d] + accuracy["ar"][d]) / 2 for d in shared}
            table["bilingual"] = {**bi, "average": sum(bi.values()) / len(bi)}
    return table


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
