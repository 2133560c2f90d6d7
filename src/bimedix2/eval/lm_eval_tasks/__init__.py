"""lm-evaluation-harness's own MCQ task definitions, pointed at local copies of their datasets.

The BiMediX2 paper ran its text benchmarks with the EleutherAI harness (arXiv:2412.07769v2, Sec. 3:
"We employed the EleutherAI (Gao et al., 2024) evaluation framework for evaluating text-only medical
tasks"). To score the same prompts, each dataset here names the installed lm-eval task whose YAML
(and `!function` utils) defines `doc_to_text` / `doc_to_choice` / `doc_to_target`, and the local
task we write only *includes* that YAML and overrides where the data comes from:

    include: <site-packages>/lm_eval/tasks/medqa/medqa.yaml     # lm-eval's own definition
    task: bimedix2_medqa_en
    dataset_path: json                                          # local files, no Hub access
    dataset_name: null
    dataset_kwargs: {data_files: {test: /data/en/medqa/test.json}}
    training_split: null                                        # splits not present locally

The local files must be in the layout of the Hub dataset the lm-eval task loads (the same fields),
e.g. a snapshot of `GBaker/MedQA-USMLE-4-options-hf`; `split_files` finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError, EvalDataError


@dataclass(frozen=True)
class LmEvalDataset:
    """One of the paper's MCQ benchmarks as an installed lm-eval task."""

    name: str  # our dataset name (the MCQ task's `datasets:` entry)
    task: str  # the lm-eval task name
    yaml: str  # its YAML, relative to lm_eval/tasks/
    hub: str  # the Hub dataset that task loads (`dataset_path`), whose file layout we read
    folder: str  # <data>/<lang>/<folder>/ holds a local copy of `hub`
    config: str | None = None  # the Hub config (`dataset_name`): a sub-folder of `folder`
    config_required: bool = False  # files must be under <folder>/<config>/ (MMLU: one folder per subject)


def _mmlu(subject: str) -> LmEvalDataset:
    return LmEvalDataset(
        f"mmlu_{subject}", f"mmlu_{subject}", f"mmlu/default/mmlu_{subject}.yaml", "cais/mmlu", "mmlu", subject, True
    )


PAPER_DATASETS: dict[str, LmEvalDataset] = {
    d.name: d
    for d in (
        LmEvalDataset("medqa", "medqa_4options", "medqa/medqa.yaml", "GBaker/MedQA-USMLE-4-options-hf", "medqa"),
        LmEvalDataset("medmcqa", "medmcqa", "medmcqa/medmcqa.yaml", "openlifescienceai/medmcqa", "medmcqa"),
        LmEvalDataset(
            "pubmedqa",
            "pubmedqa",
            "pubmedqa/pubmedqa.yaml",
            "bigbio/pubmed_qa",
            "pubmedqa",
            "pubmed_qa_labeled_fold0_source",
        ),  # fmt: skip
        *(
            _mmlu(s)
            for s in (
                "clinical_knowledge",
                "college_biology",
                "college_medicine",
                "medical_genetics",
                "professional_medicine",
                "anatomy",
            )
        ),
    )
}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
_ALIASES = {"validation": ("validation", "dev", "val"), "train": ("train",), "test": ("test",), "dev": ("dev",)}
_SUFFIXES = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}


def lm_eval_tasks_dir() -> Path:
    """The installed `lm_eval/tasks/` folder."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def upstream_yaml(entry: LmEvalDataset) -> Path:
    """The installed lm-eval YAML of `entry`; ConfigError if this lm-eval has moved or renamed it."""
    path = lm_eval_tasks_dir() / entry.yaml
    if path.is_file() and upstream_config(path).get("task") == entry.task:
        return path
    raise ConfigError(
        f"the installed lm-eval ({_version()}) has no task {entry.task!r} at lm_eval/tasks/{entry.yaml}; "
        "bimedix2 was checked against lm-eval 0.4.x task layouts"
    )


def upstream_config(path: Path) -> dict[str, Any]:
    """An lm-eval task YAML with its includes resolved (functions left as paths), as lm-eval reads it."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False)


def _version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def _candidates(root: Path, split: str) -> list[list[Path]]:
    """Groups of files that could hold `split` in a Hub snapshot folder, most specific first."""
    groups: list[list[Path]] = []
    for name in _ALIASES.get(split, (split,)):
        for base in (root, root / "data", root / "default"):
            groups.append(sorted(base.glob(f"{name}-*.parquet")))  # <split>-00000-of-00001.parquet
            groups.append(sorted((base / name).glob("*.parquet")))  # parquet-converter: <split>/0000.parquet
            groups.append(sorted(base.glob(f"*-{name}.parquet")))  # older converter: <repo>-<split>.parquet
            groups.extend([[base / f"{name}{s}"] for s in _SUFFIXES])  # <split>.parquet / .json / .jsonl
    return [[p for p in g if p.is_file()] for g in groups]


def split_files(root: Path, entry: LmEvalDataset, split: str) -> list[Path]:
    """The local files of one split of `entry` under `root` (a snapshot of `entry.hub`); [] if none."""
    if entry.config and (root / entry.config).is_dir():
        root = root / entry.config
    elif entry.config_required:
        return []
    for group in _candidates(root, split):
        if group:
            return group
    return []


def local_splits(root: Path, entry: LmEvalDataset, upstream: dict[str, Any]) -> dict[str, list[Path]]:
    """{split name lm-eval uses: files} for the splits of the upstream task found under `root`."""
    found: dict[str, list[Path]] = {}
    for key in SPLIT_KEYS:
        split = upstream.get(key)
        if split and split not in found:
            files = split_files(root, entry, split)
            if files:
                found[split] = files
    test = upstream.get("test_split")
    if test not in found:
        raise EvalDataError(
            f"{root}: no {test!r} split of {entry.hub} found (lm-eval task {entry.task} scores its {test!r} "
            f"split); expected e.g. {root / (entry.config or '') / f'{test}-00000-of-00001.parquet'} or "
            f"{root / f'{test}.json'} in the Hub dataset's layout"
        )
    return found


def builder_for(files: list[Path]) -> str:
    """The `datasets` packaged builder for these files ("parquet" or "json"); mixed kinds are an error."""
    kinds = {_SUFFIXES.get(p.suffix) for p in files}
    if len(kinds) != 1 or None in kinds:
        raise EvalDataError(f"cannot read a mix of {sorted({p.suffix for p in files})} files as one dataset: {files}")
    return kinds.pop()  # type: ignore[return-value]


def override_config(
    entry: LmEvalDataset, task_name: str, splits: dict[str, list[Path]], upstream: dict[str, Any]
) -> dict[str, Any]:
    """A task YAML that includes lm-eval's own `entry` task and reads `splits` from local files."""
    builders = {builder_for(files) for files in splits.values()}
    if len(builders) != 1:
        raise EvalDataError(f"{entry.name}: all local splits must be of one file kind, got {sorted(builders)}")
    config: dict[str, Any] = {
        "include": str(upstream_yaml(entry)),
        "task": task_name,
        # the same as lm-eval's own (it is included); spelled out so the file says what it scores
        "output_type": upstream.get("output_type"),
        "dataset_path": builders.pop(),
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {s: [str(p.resolve()) for p in files] for s, files in splits.items()}},
    }
    if upstream.get("tag"):
        config["tag"] = None  # stay out of lm-eval's own tags (mmlu_stem_tasks ...), which we never load
    for key in SPLIT_KEYS:
        if upstream.get(key) is not None and upstream[key] not in splits:
            config[key] = None  # not available locally; never needed for zero-shot scoring of the test split
    return config
