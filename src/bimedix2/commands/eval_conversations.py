"""`bimedix2 eval conversations | rate | agreement | judge-agreement`: multi-turn conversation evaluation
(pairwise, anonymised, judged in both orders), the clinicians' rater page and their agreement, and the
agreement of two LLM judges on the same BiMed-MBench / UPHILL answers."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..errors import ConfigError
from ..eval.bootstrap import DEFAULT_RESAMPLES
from ..eval.spec import ENDPOINT_KEY_ENV
from ..types import RESEARCH_NOTICE, GenParams
from .options import add_engine_options

SIDES = ("a", "b")


def register_into(sub: argparse._SubParsersAction) -> None:
    """Add the four subcommands to `bimedix2 eval`."""
    conv = sub.add_parser(
        "conversations",
        help="two models hold a patient script's multi-turn conversations; an LLM judge compares them "
        "anonymised in both orders; win/tie/loss with 95%% CIs; a clinicians' rating sheet",
    )
    conv.add_argument(
        "--script", type=Path, required=True, help="patient script JSONL (id, language, opening, follow_ups)"
    )
    for s in SIDES:
        up = s.upper()
        conv.add_argument(
            f"--model-{s}", default=None, metavar="PATH", help=f"model {up} in this process (checkpoint, .gguf)"
        )
        conv.add_argument(
            f"--endpoint-{s}", default=None, metavar="URL", help=f"model {up} through this OpenAI base URL"
        )
        conv.add_argument(f"--endpoint-model-{s}", default=None, metavar="NAME", help=f"the name --endpoint-{s} serves")
        conv.add_argument(f"--label-{s}", default=None, help=f"model {up}'s name in reports (never shown to the judge)")
    conv.add_argument(
        "--endpoint-key-env", default=ENDPOINT_KEY_ENV, metavar="VAR", help="env variable with the models' endpoint key"
    )
    conv.add_argument(
        "--judge", required=True, metavar="URL", help="judge endpoint base URL (OpenAI-compatible, .../v1)"
    )
    conv.add_argument("--judge-model", required=True, metavar="NAME", help="judge model name at that endpoint")
    conv.add_argument(
        "--judge-key-env", default="OPENAI_API_KEY", metavar="VAR", help="env variable with the judge's key"
    )
    conv.add_argument("--judge-concurrency", type=int, default=8, metavar="N", help="judge requests in flight")
    conv.add_argument(
        "--judge-max-tokens", type=int, default=None, metavar="N", help="cap on a judge reply (default: none sent)"
    )
    conv.add_argument("--patient-endpoint", default=None, metavar="URL", help="an LLM plays the patient (base URL)")
    conv.add_argument("--patient-model", default=None, metavar="NAME", help="the patient model's name there")
    conv.add_argument(
        "--patient-turns",
        type=int,
        default=None,
        metavar="N",
        help="LLM patient: follow-up turns (default: the script's)",
    )
    conv.add_argument("--out", type=Path, required=True, help="output directory (rerun with the same one to resume)")
    conv.add_argument("--max-new-tokens", type=int, default=512, metavar="N", help="reply length (default 512)")
    conv.add_argument("--temperature", type=float, default=0.0, help="models' temperature (default 0: greedy)")
    conv.add_argument("--batch-size", type=int, default=4, metavar="N", help="conversations held together (default 4)")
    conv.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES, metavar="N", help="resamples (0: no CIs)")
    conv.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="seed of the resamples")
    conv.add_argument("--sheet-seed", type=int, default=0, metavar="S", help="seed of the rating sheet's order and A/B")
    conv.add_argument("--device", default="auto", help="in-process models: auto, cpu, cuda, cuda:N")
    conv.add_argument("--dtype", default="auto", help="in-process models: auto, float32, bfloat16, float16")
    conv.add_argument("--trust-remote-code", action="store_true", help="allow a checkpoint's own code (phi3_v)")
    add_engine_options(conv)
    conv.set_defaults(func=run_conversations_cmd)

    rate = sub.add_parser("rate", help="the web rater page for clinicians (127.0.0.1): A / B / tie per pair")
    rate.add_argument("dir", type=Path, help="the --out folder of `eval conversations`")
    rate.add_argument(
        "--rater", required=True, help="the rater's name (their ratings file is rating/ratings/NAME.json)"
    )
    rate.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    rate.set_defaults(func=run_rate_cmd)

    agr = sub.add_parser("agreement", help="inter-rater agreement (Cohen's / Fleiss' kappa) and human win/tie/loss")
    agr.add_argument("dir", type=Path, help="the --out folder of `eval conversations` holding rating/ratings/*.json")
    agr.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES, metavar="N", help="resamples (0: no CIs)")
    agr.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="seed of the resamples")
    agr.add_argument("--out", type=Path, default=None, help="JSON file to write (default DIR/agreement.json)")
    agr.set_defaults(func=run_agreement_cmd)

    ja = sub.add_parser(
        "judge-agreement",
        help="two judges of the same BiMed-MBench / UPHILL answers: Cohen's kappa (stances), Spearman's rho (scores)",
    )
    ja.add_argument("run_a", type=Path, help="run judged by judge A: results.json or its --out folder")
    ja.add_argument("run_b", type=Path, help="run judged by judge B")
    ja.add_argument("--task", action="append", default=[], help="only this task (repeatable)")
    ja.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    ja.set_defaults(func=run_judge_agreement_cmd)


def _url(flag: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{flag} must be an http:// or https:// base URL (.../v1), got {value!r}")
    return value


def _key_env(flag: str, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{flag} takes the NAME of an environment variable (not shown: it may be a key)")
    return name


def _side(args: argparse.Namespace, s: str, params: GenParams):  # noqa: ANN202 - (Side, its config record)
    from ..eval.conversation_eval import Side
    from ..eval.conversations import EndpointResponder, EngineResponder
    from ..eval.spec import clean_url

    path, url, name = getattr(args, f"model_{s}"), getattr(args, f"endpoint_{s}"), getattr(args, f"endpoint_model_{s}")
    if bool(path) == bool(url):
        raise ConfigError(f"model {s.upper()}: give exactly one of --model-{s} PATH or --endpoint-{s} URL")
    label = getattr(args, f"label_{s}")
    if url:
        if not name:
            raise ConfigError(f"--endpoint-{s} needs --endpoint-model-{s} NAME")
        responder = EndpointResponder(
            _url(f"--endpoint-{s}", url),
            name,
            params,
            args.out / "conversations" / f"{s}_cache.sqlite",
            key_env=args.endpoint_key_env,
            concurrency=max(1, args.batch_size),
        )
        return Side(label or name, responder), {"endpoint": clean_url(url), "model": name, "label": label or name}
    if name:
        raise ConfigError(f"--endpoint-model-{s} is only used with --endpoint-{s}")

    def load():  # noqa: ANN202
        from .options import build_engine

        ns = argparse.Namespace(**vars(args))
        for k, v in {"format": "auto", "template": "auto", "vision_tower": None, "image_aspect_ratio": None}.items():
            setattr(ns, k, v)
        return build_engine(ns, model=path, parallel=args.batch_size)

    responder = EngineResponder(load, params, str(path), batch_size=args.batch_size)
    return Side(label or Path(path).name, responder), {"in_process": str(path), "label": label or Path(path).name}


def run_conversations_cmd(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..eval.conversation_eval import JudgeSpec, evaluate, format_summary, script_sha256
    from ..eval.conversations import EndpointResponder, Patient, load_script
    from ..eval.spec import clean_url

    if args.batch_size < 1 or args.max_new_tokens < 1 or args.bootstrap < 0 or args.judge_concurrency < 1:
        raise ConfigError("--batch-size, --max-new-tokens and --judge-concurrency must be >= 1, --bootstrap >= 0")
    if args.judge_max_tokens is not None and args.judge_max_tokens < 1:
        raise ConfigError(f"--judge-max-tokens must be >= 1, got {args.judge_max_tokens}")
    items = load_script(args.script)
    params = GenParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    _key_env("--endpoint-key-env", args.endpoint_key_env)
    sides, records = {}, {}
    for s in SIDES:
        sides[s], records[s] = _side(args, s, params)
    patient = Patient()
    patient_record: dict = {"patient": "script"}
    if args.patient_endpoint or args.patient_model:
        if not (args.patient_endpoint and args.patient_model):
            raise ConfigError("an LLM patient needs both --patient-endpoint URL and --patient-model NAME")
        if args.patient_turns is not None and args.patient_turns < 0:
            raise ConfigError("--patient-turns must be 0 or more")
        patient_params = GenParams(max_new_tokens=256, temperature=0.0)
        patient = Patient(
            EndpointResponder(
                _url("--patient-endpoint", args.patient_endpoint),
                args.patient_model,
                patient_params,
                args.out / "conversations" / "patient_cache.sqlite",
                key_env=args.endpoint_key_env,
            ),
            args.patient_turns,
        )
        patient_record = {
            "endpoint": clean_url(args.patient_endpoint),
            "model": args.patient_model,
            "turns": args.patient_turns,
        }
    elif args.patient_turns is not None:
        raise ConfigError("--patient-turns is for an LLM patient (--patient-endpoint); a script's follow-ups are fixed")
    judge = JudgeSpec(
        _url("--judge", args.judge),
        args.judge_model,
        _key_env("--judge-key-env", args.judge_key_env),
        max_tokens=args.judge_max_tokens,
        concurrency=args.judge_concurrency,
    )
    config = {
        "notice": RESEARCH_NOTICE,
        "script": str(args.script),
        "script_sha256": script_sha256(args.script),
        "n_conversations": len(items),
        "a": records["a"],
        "b": records["b"],
        "patient": patient_record,
        "judge": judge.record(),
        "params": asdict(params),
        "bootstrap": {"n_resamples": args.bootstrap, "seed": args.bootstrap_seed},
        "sheet_seed": args.sheet_seed,
        "key_envs": {"models": args.endpoint_key_env, "judge": args.judge_key_env},
    }
    results = evaluate(
        items, sides, patient, judge, params, args.out, config,
        chunk=args.batch_size, n_resamples=args.bootstrap, seed=args.bootstrap_seed, sheet_seed=args.sheet_seed,
    )  # fmt: skip
    print(format_summary(results))
    print(
        f"results: {args.out / 'results.json'}; rating sheet: {args.out / 'rating'} "
        f"(key, not for raters: {args.out / 'rating_key.json'})"
    )
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    return 0


def run_rate_cmd(args: argparse.Namespace) -> int:
    import uvicorn

    from ..eval.rater.app import create_rater_app
    from ..eval.rater.ratings import check_rater

    check_rater(args.rater)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    app = create_rater_app(args.dir, args.rater)
    print(
        f"rater page for {args.rater}: http://127.0.0.1:{args.port}/  (Ctrl-C to stop; every choice is saved at once)"
    )
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


def run_agreement_cmd(args: argparse.Namespace) -> int:
    from ..eval.rater.human import format_agreement, human_agreement, labels_of
    from ..fileio import atomic_write_json

    result = human_agreement(args.dir, args.bootstrap, args.bootstrap_seed)
    labels = labels_of(args.dir)
    result["a"], result["b"], result["outcome_of"] = labels["a"], labels["b"], "a"
    print(f"{labels['a']} (A) vs {labels['b']} (B), as rated by clinicians")
    print(format_agreement(result))
    path = args.out or args.dir / "agreement.json"
    atomic_write_json(path, result)
    print(f"agreement: {path}")
    return 0


def run_judge_agreement_cmd(args: argparse.Namespace) -> int:
    from ..eval.agreement import format_judge_agreement, judge_agreement
    from ..fileio import atomic_write_json

    result = judge_agreement(args.run_a, args.run_b, args.task)
    print(format_judge_agreement(result))
    if args.out is not None:
        atomic_write_json(args.out, result)
        print(f"judge agreement: {args.out}")
    return 0
