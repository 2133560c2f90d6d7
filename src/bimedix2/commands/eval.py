"""`bimedix2 eval`: run benchmarks, render reports, list tasks, build the NLTK data dir."""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..config import from_dict, load_yaml
from ..errors import ConfigError
from ..eval.bootstrap import DEFAULT_RESAMPLES
from ..eval.spec import ENDPOINT_CONCURRENCY, ENDPOINT_KEY_ENV, ENDPOINT_TIMEOUT_S, McqMode, Protocol, RunConfig
from ..types import RESEARCH_NOTICE
from .derive import add_dataclass_options, dataclass_from_args, opt
from .eval_baselines import register_baselines
from .eval_conversations import register_into as register_conversations
from .options import add_engine_options, add_model_options, build_engine, key_value_pairs

CLINICAL_FLAGS = ("radgraph", "chexbert", "bertscore")


@dataclass(frozen=True)
class EvalRunOptions:
    """`bimedix2 eval run` options; a --config YAML holds the same keys (a flag given wins over it)."""

    tasks: tuple[str, ...] = ()  # positional TASK ...
    data: dict[str, str] = field(default_factory=dict)  # --data TASK=PATH entries merge over the YAML's
    model: str | None = None  # --model (the model options group)
    out: Path | None = field(default=None, metadata=opt("output directory (rerun with the same one to resume)"))
    label: str | None = field(default=None, metadata=opt("model name shown in reports (none: the model's)"))
    protocol: Protocol = field(
        default="paper",
        metadata=opt("paper: the released BiMediX2 prompts and generation settings; toolkit: our own improvements"),
    )
    batch_size: int = field(default=4, metadata=opt("generation batch size"))
    limit: int | None = field(default=None, metadata=opt("only the first N samples per task"))
    seed: int = field(default=0, metadata=opt("random seed"))
    max_new_tokens: int | None = field(default=None, metadata=opt("override the tasks' generation length"))
    mcq_endpoint: str | None = field(
        default=None, metadata=opt("MCQ: OpenAI-compatible base URL (.../v1) serving --model with prompt logprobs")
    )
    endpoint: str | None = field(
        default=None,
        metadata=opt(
            "generate every generative task's answers through this OpenAI-compatible chat endpoint "
            "(base URL, .../v1) instead of loading a model here",
            metavar="URL",
        ),
    )
    endpoint_model: str | None = field(
        default=None, metadata=opt("the model name the --endpoint serves (required with it)", metavar="NAME")
    )
    endpoint_key_env: str = field(
        default=ENDPOINT_KEY_ENV,
        metadata=opt("environment variable holding the --endpoint API key (unset: no key sent)", metavar="VAR"),
    )
    endpoint_concurrency: int = field(
        default=ENDPOINT_CONCURRENCY, metadata=opt("--endpoint: requests in flight at once", metavar="N")
    )
    endpoint_timeout_s: float = field(
        default=ENDPOINT_TIMEOUT_S, metadata=opt("--endpoint: seconds one request may take", metavar="S")
    )
    mcq_mode: McqMode = field(
        default="auto",
        metadata=opt(
            "MCQ scoring: loglikelihood (lm-eval), generative (the answer letter read from a reply: another "
            "protocol), auto (generative with --endpoint and no --mcq-endpoint)"
        ),
    )
    judge_url: str | None = field(default=None, metadata=opt("judge endpoint base URL (OpenAI-compatible, .../v1)"))
    judge_model: str | None = field(default=None, metadata=opt("judge model name at that endpoint"))
    judge_swap: bool = field(
        default=False,
        metadata=opt("judged tasks: ask the judge again with the answers' positions exchanged; report position bias"),
    )
    bootstrap: int = field(
        default=DEFAULT_RESAMPLES,
        metadata=opt("bootstrap resamples for the 95%% intervals of every metric (0: none)", metavar="N"),
    )
    bootstrap_seed: int = field(default=0, metadata=opt("seed of the bootstrap resamples", metavar="S"))
    radgraph: str | None = field(
        default=None,
        metadata=opt(
            "report tasks: F1-RadGraph from the radgraph package's model (extracted radgraph.tar.gz dir, or the file)",
            metavar="PATH",
        ),
    )
    chexbert: str | None = field(
        default=None,
        metadata=opt(
            "report tasks: CheXbert similarity from DIR/chexbert.pth + bert-base-uncased vocab.txt", metavar="DIR"
        ),
    )
    bertscore: str | None = field(
        default=None,
        metadata=opt(
            "report tasks: BERTScore from a local distilroberta-base; with --radgraph and --chexbert also RadCliQ-v1",
            metavar="DIR",
        ),
    )

    def run_config(self) -> RunConfig:
        """The runner's settings (what results.json records)."""
        return RunConfig(
            out_dir=self.out,
            model=self.model or "default",
            label=self.label or "",
            data=dict(self.data),
            batch_size=self.batch_size,
            limit=self.limit,
            seed=self.seed,
            max_new_tokens=self.max_new_tokens,
            mcq_endpoint=self.mcq_endpoint,
            judge_url=self.judge_url,
            judge_model=self.judge_model,
            clinical_models={n: getattr(self, n) for n in CLINICAL_FLAGS if getattr(self, n)},
            protocol=self.protocol,
            bootstrap=self.bootstrap,
            bootstrap_seed=self.bootstrap_seed,
            judge_swap=self.judge_swap,
            endpoint=self.endpoint,
            endpoint_model=self.endpoint_model,
            endpoint_key_env=self.endpoint_key_env,
            endpoint_concurrency=self.endpoint_concurrency,
            endpoint_timeout_s=self.endpoint_timeout_s,
            mcq_mode=self.mcq_mode,
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    ev = subparsers.add_parser("eval", help="evaluate a model on the BiMediX2 paper's benchmarks; reports")
    sub = ev.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")

    run = sub.add_parser("run", help="run tasks; writes OUT/results.json, per-sample predictions; resumes")
    add_model_options(run)
    add_engine_options(run)
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
    add_dataclass_options(run, EvalRunOptions)
    run.set_defaults(func=run_eval_cmd)

    rep = sub.add_parser("report", help="markdown + HTML tables and a radar chart from results files")
    rep.add_argument("results", nargs="+", type=Path, help="results.json files or `eval run --out` folders")
    rep.add_argument("--out", type=Path, required=True, help="output directory")
    rep.add_argument(
        "--with-reference", action="store_true", help="also add the paper's numbers as rows of the per-kind tables"
    )
    rep.add_argument(
        "--no-paper-column", action="store_true", help="side-by-side table without the paper (reported) column"
    )
    rep.set_defaults(func=run_report)

    cmp = sub.add_parser(
        "compare",
        help="B - A per task and metric on the shared samples: paired-bootstrap 95%% CI and p-value",
    )
    cmp.add_argument("run_a", type=Path, help="run A: its results.json or its --out folder")
    cmp.add_argument("run_b", type=Path, help="run B: its results.json or its --out folder")
    cmp.add_argument("--task", action="append", default=[], help="only this task (repeatable; default: all shared)")
    cmp.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES, metavar="N", help="resamples (default 1000)")
    cmp.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="seed of the resamples (default 0)")
    cmp.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON to this file")
    cmp.set_defaults(func=run_compare)

    tasks = sub.add_parser("tasks", help="list the built-in tasks")
    tasks.set_defaults(func=run_tasks)

    nltk = sub.add_parser("setup-nltk", help="build NLTK WordNet data for METEOR from Debian's wordnet packages")
    nltk.add_argument("--target", type=Path, default=None, help="NLTK data dir (default ~/.cache/bimedix2/nltk_data)")
    nltk.set_defaults(func=run_setup_nltk)

    register_prepare_mcq_ar(sub)
    register_conversations(sub)
    register_baselines(sub)


def register_prepare_mcq_ar(sub: argparse._SubParsersAction) -> None:
    """`bimedix2 eval prepare-mcq-ar SRC OUT`: translated MCQ records -> Arabic lm-eval MCQ tasks."""
    prep = sub.add_parser(
        "prepare-mcq-ar",
        help="Arabic MCQ tasks (lm-eval's own, local files) from the translation pipeline's MCQ records",
    )
    prep.add_argument("source", type=Path, help="translated.jsonl of `bimedix2 data translate` (or its job folder)")
    prep.add_argument("out", type=Path, help="output folder: OUT/ar/<dataset>/..., OUT/lm_eval_tasks/*.yaml")
    prep.add_argument(
        "--split",
        default="auto",
        choices=("auto", "test", "validation", "train", "all"),
        help="records kept: auto = the split lm-eval scores (test; MedMCQA: validation)",
    )
    prep.set_defaults(func=run_prepare_mcq_ar)


def run_prepare_mcq_ar(args: argparse.Namespace) -> int:
    from ..eval.mcq_prepare import prepare_mcq_arabic

    tasks, report = prepare_mcq_arabic(args.source, args.out, args.split)
    for name, task in tasks.items():
        print(f"{name:36s} {report.written[task.dataset]:6d} questions  {task.definition}")
    if report.skipped:
        print(f"skipped: {dict(report.skipped)} (details: {args.out / 'ar' / 'prepare_report.json'})")
    include = args.out / "lm_eval_tasks"
    print(f"run: bimedix2 eval run mcq --data mcq={args.out} ...  (or lm_eval --include_path {include})")
    return 0


def run_options(args: argparse.Namespace) -> EvalRunOptions:
    """The run's options: flags given > --config YAML > defaults; --data entries merge over the YAML's."""
    base = load_yaml(args.config) if args.config is not None else {}
    try:
        from_config = from_dict(EvalRunOptions, base)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    extra: dict = {"data": {**from_config.data, **key_value_pairs(args.data, "--data", "TASK=PATH")}}
    if args.tasks:
        extra["tasks"] = list(args.tasks)
    if args.model:
        extra["model"] = args.model
    options = dataclass_from_args(EvalRunOptions, args, base=base, extra=extra)
    if not options.tasks:
        raise ConfigError("name the tasks to run (positional TASK ... or `tasks:` in --config)")
    if options.out is None:
        raise ConfigError("--out is required (or `out:` in --config)")
    if options.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if options.endpoint is not None:
        if not options.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"--endpoint must be an http:// or https:// base URL (.../v1), got {options.endpoint!r}")
        if not options.endpoint_model:
            raise ConfigError("--endpoint needs --endpoint-model NAME (the model name the endpoint serves)")
    elif options.endpoint_model:
        raise ConfigError("--endpoint-model is only used with --endpoint URL")
    if options.endpoint_concurrency < 1:
        raise ConfigError(f"--endpoint-concurrency must be at least 1, got {options.endpoint_concurrency}")
    if options.endpoint_timeout_s <= 0:
        raise ConfigError(f"--endpoint-timeout-s must be > 0, got {options.endpoint_timeout_s}")
    _check_key_env(options)
    if options.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {options.bootstrap}")
    return options


def _check_key_env(options: EvalRunOptions) -> None:
    """--endpoint-key-env must name a variable, never be the key (the value is not echoed: it may be one)."""
    name = options.endpoint_key_env
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise ConfigError(
            "--endpoint-key-env takes the NAME of an environment variable holding the API key, and what was given "
            "is not a variable name (not shown, in case it is the key itself); the key never goes on the command line"
        )
    if options.endpoint and name != ENDPOINT_KEY_ENV and name not in os.environ:
        raise ConfigError(
            "the environment variable named by --endpoint-key-env is not set (its name is not shown, in case it "
            "is a key); export it, or leave --endpoint-key-env out for an endpoint that needs no key"
        )


def run_eval_cmd(args: argparse.Namespace) -> int:
    from ..eval.kinds import get_kind
    from ..eval.runner import check_data, run_eval
    from ..eval.tasks import load_task

    options = run_options(args)
    specs = [load_task(t) for t in options.tasks]
    cfg = options.run_config()
    check_data(specs, cfg)
    engine = None
    if any(get_kind(s.kind).needs_engine(cfg) for s in specs):
        engine = build_engine(args, model=options.model, parallel=options.batch_size)
        loglikelihood = cfg.resolved_mcq_mode() == "loglikelihood" and not cfg.mcq_endpoint
        if engine.loaded.model is None and any(s.kind == "mcq" for s in specs) and loglikelihood:
            raise ConfigError(
                "MCQ scores answers by log-probability through transformers (lm-eval's hf backend); the "
                "llama-cpp engine has no transformers model: run MCQ with --engine transformers"
            )
    path = run_eval([s.source for s in specs], engine, cfg)
    print(f"results: {path}")
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..eval.report import render_report

    files = render_report(
        args.results, args.out, with_reference=args.with_reference, paper_column=not args.no_paper_column
    )
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..eval.compare import compare_runs, format_comparison
    from ..fileio import atomic_write_json

    result = compare_runs(args.run_a, args.run_b, args.task, args.bootstrap, args.bootstrap_seed)
    print(format_comparison(result))
    if args.out is not None:
        atomic_write_json(args.out, result)
        print(f"comparison: {args.out}")
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
