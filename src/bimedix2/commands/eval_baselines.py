"""`bimedix2 eval baselines FILE --out DIR`: evaluate the comparison models a baselines YAML names, each into
`DIR/<name>/` with `eval run`'s machinery (resumable), then write the side-by-side report to `DIR/report/`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..types import RESEARCH_NOTICE
from .options import key_value_pairs

if TYPE_CHECKING:
    from ..engine import Engine
    from ..eval.baselines import Baseline, LoadSettings
    from ..eval.spec import RunConfig


def register_baselines(sub: argparse._SubParsersAction) -> None:
    """Add the `baselines` subcommand to `bimedix2 eval`."""
    p = sub.add_parser(
        "baselines",
        help="evaluate the comparison models of a baselines YAML (configs/eval/baselines.yaml), one results "
        "folder each (resumable), then a side-by-side report",
    )
    p.add_argument("config", type=Path, help="baselines YAML (see configs/eval/baselines.yaml)")
    p.add_argument("--out", type=Path, default=None, help="output directory: OUT/<name>/ per model, OUT/report/")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="only this model (repeatable)")
    p.add_argument(
        "--data", action="append", default=[], metavar="TASK=PATH", help="where a task's data lives (over the file's)"
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="load model NAME from PATH instead of its `model:` (repeatable)",
    )
    p.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="model NAME is served at URL (.../v1) instead of its `endpoint:` (repeatable)",
    )
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an eval-run setting for every model, over the file's (e.g. judge_url=http://HOST:8001/v1; repeatable)",
    )
    p.add_argument("--list", action="store_true", help="list the file's models and how each is evaluated; run nothing")
    p.add_argument("--no-report", action="store_true", help="run the models only; no OUT/report/")
    p.add_argument("--stop-on-error", action="store_true", help="stop at the first model that fails (default: go on)")
    p.set_defaults(func=run_baselines_cmd)


def _run_settings(items: list[str]) -> dict[str, object]:
    """--run KEY=VALUE items, each value read as a YAML scalar (as in the file); types are checked later."""
    import yaml

    out: dict[str, object] = {}
    for key, value in key_value_pairs(items, "--run").items():
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--run {key}=...: not a valid value ({exc})") from None
    return out


def _engine_args(settings: LoadSettings) -> argparse.Namespace:
    """The namespace `build_engine` reads, from a baseline's `load:` block."""
    values = asdict(settings)
    values["mmproj"] = Path(values["mmproj"]) if values["mmproj"] else None
    return argparse.Namespace(model=None, **values)


def run_baselines_cmd(args: argparse.Namespace) -> int:
    from ..eval.baselines import load_baselines, plan_runs, run_baselines
    from ..eval.report import render_report
    from .options import build_engine

    baselines = load_baselines(args.config)
    if args.list:
        for b in baselines.models:
            where = f"endpoint {b.endpoint} model {b.endpoint_model}" if b.remote else f"model {b.model} (here)"
            print(f"{b.name:20s} {b.column:20s} {where}; tasks: {', '.join(baselines.tasks_of(b))}")
        return 0
    if args.out is None:
        raise ConfigError("--out DIR is required (each model's results go to DIR/<name>/, the report to DIR/report/)")
    plans = plan_runs(
        baselines,
        args.out,
        only=args.only,
        data=key_value_pairs(args.data, "--data"),
        models=key_value_pairs(args.model, "--model"),
        endpoints=key_value_pairs(args.endpoint, "--endpoint"),
        run=_run_settings(args.run),
    )

    def make_engine(baseline: Baseline, cfg: RunConfig) -> Engine:
        return build_engine(_engine_args(baseline.load), model=baseline.model, parallel=cfg.batch_size)

    outcomes = run_baselines(baselines, plans, make_engine, keep_going=not args.stop_on_error)
    for o in outcomes:
        status = f"results: {o.results}" if o.results else f"FAILED: {o.error}"
        print(f"{o.baseline.name} ({o.baseline.column}): {status}")
    ran = {o.baseline.name for o in outcomes}
    earlier = [p for b in baselines.models if b.name not in ran and (p := args.out / b.name / "results.json").is_file()]
    finished = [o.results for o in outcomes if o.results] + earlier  # models run before (e.g. another --only)
    if finished and not args.no_report:
        for kind, path in render_report(finished, args.out / "report").items():
            print(f"{kind}: {path}")
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    failed = [o for o in outcomes if o.error]
    if failed:
        print(
            f"bimedix2: {len(failed)} of {len(plans)} models failed ({', '.join(o.baseline.name for o in failed)}); "
            "what they finished is kept: rerun the same command to resume",
            file=sys.stderr,
        )
        return 1
    return 0
