"""`bimedix2 eval`: run benchmarks, render reports, list tasks, build the NLTK data dir."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..types import RESEARCH_NOTICE
from .options import add_model_options, load_options


def register(subparsers: argparse._SubParsersAction) -> None:
    ev = subparsers.add_parser("eval", help="evaluate a model on the BiMediX2 paper's benchmarks; reports")
    sub = ev.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")

    run = sub.add_parser("run", help="run tasks; writes OUT/results.json, per-sample predictions; resumes")
    add_model_options(run)
    run.add_argument("tasks", nargs="*", help="task names (see `bimedix2 eval tasks`) or task YAML files")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="run config YAML (configs/eval/*.yaml): tasks, data, out, judge...; flags override it",
    )
    run.add_argument(
        "--data", action="append", default=[], metavar="TASK=PATH", help="where a task's dataset lives (repeatable)"
    )
    run.add_argument("--out", type=Path, default=None, help="output directory (rerun with the same one to resume)")
    run.add_argument("--label", default="", help="model name shown in reports")
    run.add_argument("--batch-size", type=int, default=None, help="generation batch size (default 4)")
    run.add_argument("--limit", type=int, default=None, help="only the first N samples per task")
    run.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    run.add_argument("--max-new-tokens", type=int, default=None, help="override the tasks' generation length")
    run.add_argument(
        "--mcq-endpoint",
        default=None,
        help="MCQ: OpenAI-compatible base URL (.../v1) serving --model with prompt logprobs",
    )
    run.add_argument("--judge-url", default=None, help="judge endpoint base URL (OpenAI-compatible, .../v1)")
    run.add_argument("--judge-model", default=None, help="judge model name at that endpoint")
    run.add_argument(
        "--chexbert",
        default=None,
        metavar="DIR",
        help="report tasks: CheXbert similarity from DIR/chexbert.pth + bert-base-uncased vocab.txt",
    )
    run.add_argument(
        "--radgraph",
        default=None,
        metavar="PATH",
        help="report tasks: F1-RadGraph from the radgraph package's model (extracted radgraph.tar.gz dir, or the file)",
    )
    run.add_argument(
        "--bertscore",
        default=None,
        metavar="DIR",
        help="report tasks: BERTScore from a local distilroberta-base; with --radgraph and --chexbert also RadCliQ-v1",
    )
    run.set_defaults(func=run_eval_cmd)

    rep = sub.add_parser("report", help="markdown + HTML tables and a radar chart from results files")
    rep.add_argument("results", nargs="+", type=Path, help="results.json files to compare")
    rep.add_argument("--out", type=Path, required=True, help="output directory")
    rep.add_argument("--with-reference", action="store_true", help="add the shipped BiMediX2 reference file")
    rep.set_defaults(func=run_report)

    tasks = sub.add_parser("tasks", help="list the built-in tasks")
    tasks.set_defaults(func=run_tasks)

    nltk = sub.add_parser("setup-nltk", help="build NLTK WordNet data for METEOR from Debian's wordnet packages")
    nltk.add_argument("--target", type=Path, default=None, help="NLTK data dir (default ~/.cache/bimedix2/nltk_data)")
    nltk.set_defaults(func=run_setup_nltk)


def _data_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise ConfigError(f"--data expects TASK=PATH, got {item!r}")
        out[task] = path
    return out


CONFIG_KEYS = {
    "tasks": list,
    "data": dict,
    "out": str,
    "model": str,
    "label": str,
    "batch_size": int,
    "limit": int,
    "seed": int,
    "max_new_tokens": int,
    "mcq_endpoint": str,
    "judge_url": str,
    "judge_model": str,
    "radgraph": str,
    "chexbert": str,
    "bertscore": str,
}
DEFAULTS = {"batch_size": 4, "seed": 0, "label": ""}


def apply_config(args: argparse.Namespace) -> argparse.Namespace:
    """Fill options not given on the command line from --config (flags win; --data entries merge)."""
    import yaml

    raw: dict = {}
    if args.config is not None:
        try:
            raw = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read eval config {args.config}: {exc}") from exc
        unknown = sorted(set(raw) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"{args.config}: unknown key(s) {unknown}; known: {sorted(CONFIG_KEYS)}")
        for key, kind in CONFIG_KEYS.items():
            if key in raw and raw[key] is not None and not isinstance(raw[key], kind):
                raise ConfigError(f"{args.config}: {key} must be a {kind.__name__}")
    values = vars(args)
    for key in CONFIG_KEYS:
        if key in ("tasks", "data"):
            continue
        if values.get(key) in (None, "") and raw.get(key) is not None:
            values[key] = Path(raw[key]) if key == "out" else raw[key]
        if values.get(key) is None and key in DEFAULTS:
            values[key] = DEFAULTS[key]
    if not args.tasks:
        args.tasks = list(raw.get("tasks") or [])
    args.data = [f"{k}={v}" for k, v in (raw.get("data") or {}).items()] + list(args.data)
    if not args.tasks:
        raise ConfigError("name the tasks to run (positional TASK ... or `tasks:` in --config)")
    if args.out is None:
        raise ConfigError("--out is required (or `out:` in --config)")
    return args


def run_eval_cmd(args: argparse.Namespace) -> int:
    from ..eval.runner import RunConfig, check_data, run_eval
    from ..eval.tasks import load_task

    args = apply_config(args)
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    specs = [load_task(t) for t in args.tasks]
    clinical = {n: getattr(args, n) for n in ("radgraph", "chexbert", "bertscore") if getattr(args, n)}
    cfg = RunConfig(
        out_dir=args.out,
        model=args.model or "default",
        label=args.label,
        data=_data_map(args.data),
        batch_size=args.batch_size,
        limit=args.limit,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        mcq_endpoint=args.mcq_endpoint,
        judge_url=args.judge_url,
        judge_model=args.judge_model,
        clinical_models=clinical,
    )
    check_data(specs, cfg)
    engine = None
    if any(s.kind != "mcq" for s in specs) or not args.mcq_endpoint:  # MCQ scores the loaded model too
        from ..engine import Engine
        from ..model.loader import load_model

        engine = Engine(load_model(args.model, load_options(args)))
    path = run_eval([s.source for s in specs], engine, cfg)
    print(f"results: {path}")
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..eval.report import render_report

    for kind, path in render_report(args.results, args.out, with_reference=args.with_reference).items():
        print(f"{kind}: {path}")
    return 0


def run_tasks(args: argparse.Namespace) -> int:
    from ..eval.tasks import list_tasks, load_task

    for name in list_tasks():
        spec = load_task(name)
        print(f"{name:28s} {spec.kind:14s} {spec.title}")
    return 0


def run_setup_nltk(args: argparse.Namespace) -> int:
    from ..eval.nltk_setup import setup_wordnet

    print(f"NLTK data: {setup_wordnet(args.target)}")
    return 0
