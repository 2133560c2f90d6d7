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
    run.add_argument("tasks", nargs="+", help="task names (see `bimedix2 eval tasks`) or task YAML files")
    run.add_argument(
        "--data", action="append", default=[], metavar="TASK=PATH", help="where a task's dataset lives (repeatable)"
    )
    run.add_argument("--out", type=Path, required=True, help="output directory (rerun with the same one to resume)")
    run.add_argument("--label", default="", help="model name shown in reports")
    run.add_argument("--batch-size", type=int, default=4)
    run.add_argument("--limit", type=int, default=None, help="only the first N samples per task")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--max-new-tokens", type=int, default=None, help="override the tasks' generation length")
    run.add_argument(
        "--mcq-endpoint",
        default=None,
        help="MCQ: OpenAI-compatible base URL (.../v1) serving --model with prompt logprobs",
    )
    run.add_argument("--judge-url", default=None, help="judge endpoint base URL (OpenAI-compatible, .../v1)")
    run.add_argument("--judge-model", default=None, help="judge model name at that endpoint")
    for name in ("radgraph", "chexbert", "radcliq"):
        run.add_argument(f"--{name}", default=None, metavar="PATH", help=f"local {name} model (clinical metrics)")
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


def run_eval_cmd(args: argparse.Namespace) -> int:
    from ..eval.runner import RunConfig, check_data, run_eval
    from ..eval.tasks import load_task

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    specs = [load_task(t) for t in args.tasks]
    clinical = {n: getattr(args, n) for n in ("radgraph", "chexbert", "radcliq") if getattr(args, n)}
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
    if any(s.kind != "mcq" for s in specs):
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
