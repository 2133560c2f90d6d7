"""`bimedix2 serve` (OpenAI-compatible API + web chat) and `bimedix2 serve-vllm` (GPU deployment)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..types import RESEARCH_NOTICE
from .options import add_model_options, load_options


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="OpenAI-compatible API (/v1/chat/completions, /v1/models, /health) and a web chat at /"
    )
    add_model_options(serve)
    _add_network_options(serve)
    group = serve.add_argument_group("serving")
    group.add_argument("--engine", choices=("transformers", "vllm"), default="transformers",
                       help="transformers (this process, dynamic batching) or vllm (exec vLLM's server; GPU only)")
    group.add_argument("--served-model-name", default=None,
                       help="model id clients send (default: --model, or 'bimedix2')")
    group.add_argument("--max-batch-size", type=int, default=8, help="requests generated together (default: 8)")
    group.add_argument("--max-queue", type=int, default=64, help="waiting requests before 429 (default: 64)")
    group.add_argument("--timeout", type=float, default=300.0, help="seconds per request before 504 (default: 300)")
    group.add_argument("--max-body-mb", type=float, default=32.0, help="request body limit in MiB (default: 32)")
    group.add_argument("--max-image-mb", type=float, default=16.0, help="per-image limit in MiB (default: 16)")
    group.add_argument("--allow-local-images", action="append", default=[], type=Path, metavar="DIR",
                       help="allow file:// image URLs under DIR (repeatable; default: none)")
    group.add_argument("--default-max-tokens", type=int, default=1024, help="max_tokens when a request gives none")
    group.add_argument("--no-steer-language", action="store_true",
                       help="do not ask the model to answer in the language of the question")
    group.add_argument("--log-requests", action="store_true",
                       help="log request sizes and counts (never prompts or images)")
    _add_vllm_options(serve)
    serve.set_defaults(func=run_serve)

    vllm = subparsers.add_parser(
        "serve-vllm", help="serve through vLLM's OpenAI server on GPUs, with BiMediX2's template"
    )
    vllm.add_argument("--model", "-m", required=True, help="transformers Llava checkpoint (e.g. MBZUAI/BiMediX2-8B-hf)")
    vllm.add_argument("--served-model-name", default=None)
    _add_network_options(vllm)
    _add_vllm_options(vllm)
    vllm.add_argument("--allow-local-images", default=None, metavar="DIR", help="vLLM --allowed-local-media-path")
    vllm.set_defaults(func=run_serve_vllm)


def _add_network_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("network")
    group.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    group.add_argument("--port", type=int, default=8000)
    group.add_argument("--api-key", default=None,
                       help="require 'Authorization: Bearer KEY' on /v1 routes (default: $BIMEDIX2_API_KEY, else none)")


def _add_vllm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("vllm")
    group.add_argument("--tensor-parallel-size", "--tp", type=int, default=1,
                       help="GPUs to shard the model over (70B: 4 x 80 GB, or 2 with fp8)")
    group.add_argument("--max-model-len", type=int, default=4096, help="context length (BiMediX2 trained at 4096)")
    group.add_argument("--vllm-dtype", default="auto", help="vLLM --dtype (default: auto)")
    group.add_argument("--gpu-memory-utilization", type=float, default=None)
    group.add_argument("--template-file", type=Path, default=None,
                       help="where to write the chat template (default: ~/.cache/bimedix2/vllm/bimedix2-llama3.jinja)")
    group.add_argument("--dry-run", action="store_true", help="print the vLLM command and template path, do not run")
    group.add_argument("--vllm-arg", action="append", default=[], help="extra argument passed to vLLM (repeatable)")


def _api_key(args: argparse.Namespace) -> str | None:
    from ..serve.config import api_key_from_env

    return args.api_key or api_key_from_env()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    if args.engine == "vllm":
        if args.model is None:
            raise ConfigError(
                "--engine vllm needs --model (a transformers Llava checkpoint, e.g. MBZUAI/BiMediX2-8B-hf)"
            )
        args.allow_local_images = str(args.allow_local_images[0]) if args.allow_local_images else None
        return run_serve_vllm(args)
    import uvicorn

    from ..engine import Engine
    from ..model.loader import load_model
    from ..serve.api import create_app
    from ..serve.config import ServeConfig

    key = _api_key(args)
    if not _is_loopback(args.host) and key is None:
        print(f"bimedix2: warning: listening on {args.host} without an API key; anyone who can reach it can use it",
              file=sys.stderr)
    for directory in args.allow_local_images:
        if not directory.is_dir():
            raise ConfigError(f"--allow-local-images {directory}: not a directory")
    config = ServeConfig(
        model_id=args.served_model_name or args.model or "bimedix2",
        host=args.host,
        port=args.port,
        api_key=key,
        max_batch_size=args.max_batch_size,
        max_queue=args.max_queue,
        request_timeout_s=args.timeout,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        local_image_dirs=tuple(d.resolve() for d in args.allow_local_images),
        default_max_tokens=args.default_max_tokens,
        steer_language=not args.no_steer_language,
        log_requests=args.log_requests,
    )
    engine = Engine(load_model(args.model, load_options(args)))
    print(f"bimedix2 serving {config.model_id!r} on http://{args.host}:{args.port}/ (web chat at /, API at /v1). "
          f"{RESEARCH_NOTICE}", file=sys.stderr)
    uvicorn.run(create_app(engine, config), host=args.host, port=args.port,
                log_level="info" if args.verbose else "warning", access_log=args.log_requests)
    return 0


def run_serve_vllm(args: argparse.Namespace) -> int:
    from ..model.loader import cache_dir
    from ..serve.vllm import (
        VllmOptions,
        build_command,
        check_model,
        launch_env,
        printable,
        vllm_available,
        write_template,
    )

    check_model(args.model)
    template = write_template(args.template_file or cache_dir() / "vllm" / "bimedix2-llama3.jinja")
    options = VllmOptions(
        model=args.model,
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        tensor_parallel_size=args.tensor_parallel_size,
        max_model_len=args.max_model_len,
        dtype=args.vllm_dtype,
        gpu_memory_utilization=args.gpu_memory_utilization,
        allowed_local_media_path=args.allow_local_images,
        extra_args=tuple(args.vllm_arg),
    )
    cmd = build_command(options, template)
    key = _api_key(args)
    if args.dry_run:
        print(printable(cmd))
        print(f"# chat template: {template}; API key: {'from $VLLM_API_KEY' if key else 'none'}", file=sys.stderr)
        return 0
    if not vllm_available():
        raise ConfigError("vLLM is not installed here (it needs a CUDA GPU host): `pip install vllm` there, "
                          "or run with --dry-run to print the command")
    print(f"{printable(cmd)}\n{RESEARCH_NOTICE}", file=sys.stderr)
    os.execvpe(cmd[0], cmd, launch_env(os.environ, key))
    return 0  # not reached
