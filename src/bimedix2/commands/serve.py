"""`bimedix2 serve` (OpenAI-compatible API + web chat) and `bimedix2 serve-vllm` (GPU deployment).

The flags are derived from the option dataclasses below (`commands.derive`); their defaults are
`ServeConfig`'s and `VllmOptions`'s own, never copied. `serve --config FILE` reads the same
options from YAML (keys: the `ServeOptions` field names); a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import load_yaml
from ..errors import ConfigError
from ..serve.config import MiB, ServeConfig, api_key_from_env, public_model_id
from ..serve.vllm import VllmOptions
from ..types import RESEARCH_NOTICE
from .derive import add_dataclass_options, dataclass_from_args, opt
from .options import add_engine_options, add_model_options, build_engine

_SERVE = ServeConfig()
_VLLM = VllmOptions(model="")


@dataclass(frozen=True)
class NetworkOptions:
    """Where the server listens and who may use it (both `serve` and `serve-vllm`)."""

    host: str = field(
        default=_SERVE.host, metadata=opt("address to bind; not loopback and no API key prints a warning")
    )
    port: int = field(default=_SERVE.port, metadata=opt("port to bind", metavar="N"))
    api_key: str | None = field(
        default=_SERVE.api_key,
        metadata=opt(
            "require 'Authorization: Bearer KEY' on every route that reaches the model or images; "
            "when not given: $BIMEDIX2_API_KEY, else no key",
            metavar="KEY",
        ),
    )
    served_model_name: str | None = field(
        default=None,
        metadata=opt(
            "model id clients send; when not given: a hub --model as given, a local one's directory name "
            "(never its path), else 'bimedix2'",
            metavar="NAME",
        ),
    )


@dataclass(frozen=True)
class ServeOptions(NetworkOptions):
    """`bimedix2 serve`'s options, in the units the flags use (seconds, MiB)."""

    engine: Literal["auto", "transformers", "llama-cpp", "vllm"] = field(
        default="auto",
        metadata=opt(
            "auto (llama-cpp for a .gguf --model when llama-cpp-python is installed, else transformers), "
            "transformers or llama-cpp (this process, rows batched together) or vllm (exec vLLM's server; GPU only)"
        ),
    )
    max_batch_size: int = field(default=_SERVE.max_batch_size, metadata=opt("requests generated together", metavar="N"))
    max_queue: int = field(default=_SERVE.max_queue, metadata=opt("waiting requests before 429", metavar="N"))
    batch_window_s: float = field(
        default=_SERVE.batch_window_s,
        metadata=opt("seconds to wait for more requests after a batch's first", metavar="S"),
    )
    scheduler: Literal["auto", "continuous", "batch"] = field(
        default="auto",
        metadata=opt(
            "continuous (a request joins the running batch at the next decoding step; llama-cpp engine), batch "
            "(later requests wait for the running batch to end) or auto (continuous where the engine has it)"
        ),
    )
    timeout: float = field(
        default=_SERVE.request_timeout_s, metadata=opt("seconds per request before 504", metavar="S")
    )
    max_body_mb: float = field(
        default=_SERVE.max_body_bytes / MiB,
        metadata=opt("request body limit in MiB (413), chunked bodies included", metavar="MIB"),
    )
    max_image_mb: float = field(
        default=_SERVE.max_image_bytes / MiB, metadata=opt("per-image limit in MiB (413)", metavar="MIB")
    )
    allow_local_images: tuple[Path, ...] = field(
        default=_SERVE.local_image_dirs,
        metadata=opt("allow file:// image URLs under DIR (repeatable)", metavar="DIR"),
    )
    default_max_tokens: int = field(
        default=_SERVE.default_max_tokens, metadata=opt("max_tokens when a request gives none", metavar="N")
    )
    steer_language: bool = field(
        default=_SERVE.steer_language,
        metadata=opt(
            "append 'Answer in English.' / 'أجب باللغة العربية الفصحى.' to the last user turn "
            '(per request: "steer_language")'
        ),
    )
    log_requests: bool = field(
        default=_SERVE.log_requests,
        metadata=opt(
            "log each request's method, path (no query string), status and time, and message/image counts, "
            "at info level on its own (no -v needed); never headers, prompts or images"
        ),
    )
    allowed_host: tuple[str, ...] = field(
        default=_SERVE.allowed_hosts,
        metadata=opt(
            "also answer to this Host name (repeatable; '*.example.com' patterns, '*' for any); besides the bind "
            "address, and localhost/127.0.0.1/::1 for a loopback bind. Other Host headers get 400 (DNS rebinding)",
            metavar="NAME",
        ),
    )
    allow_origin: tuple[str, ...] = field(
        default=_SERVE.allowed_origins,
        metadata=opt(
            "let browser pages from this origin (https://host[:port]; repeatable; '*' for any) call the API "
            "cross-origin (CORS); other origins get 403",
            metavar="ORIGIN",
        ),
    )
    shutdown_grace_s: float = field(
        default=_SERVE.shutdown_grace_s,
        metadata=opt("on SIGTERM/Ctrl-C, wait this long for in-flight requests, then cancel them", metavar="S"),
    )
    keep_alive_s: float = field(
        default=_SERVE.keep_alive_s, metadata=opt("close an idle keep-alive connection after this long", metavar="S")
    )
    body_timeout_s: float = field(
        default=_SERVE.body_timeout_s,
        metadata=opt("a request body must arrive whole within this long (408 otherwise)", metavar="S"),
    )

    def to_config(self, model: str | None, api_key: str | None) -> ServeConfig:
        """The server's `ServeConfig`; `ConfigError` for a value it refuses."""
        try:
            return ServeConfig(
                model_id=self.served_model_name or public_model_id(model) or _SERVE.model_id,
                host=self.host,
                port=self.port,
                api_key=api_key,
                max_batch_size=self.max_batch_size,
                max_queue=self.max_queue,
                batch_window_s=self.batch_window_s,
                scheduler=self.scheduler,
                request_timeout_s=self.timeout,
                max_body_bytes=round(self.max_body_mb * MiB),
                max_image_bytes=round(self.max_image_mb * MiB),
                local_image_dirs=tuple(d.resolve() for d in self.allow_local_images),
                default_max_tokens=self.default_max_tokens,
                steer_language=self.steer_language,
                log_requests=self.log_requests,
                allowed_hosts=self.allowed_host,
                allowed_origins=self.allow_origin,
                shutdown_grace_s=self.shutdown_grace_s,
                keep_alive_s=self.keep_alive_s,
                body_timeout_s=self.body_timeout_s,
            )
        except ValueError as exc:
            raise ConfigError(f"serve options: {exc}") from None


@dataclass(frozen=True)
class VllmFlags:
    """How vLLM is launched (`serve-vllm`, `serve --engine vllm`)."""

    tensor_parallel_size: int = field(
        default=_VLLM.tensor_parallel_size,
        metadata=opt("GPUs to shard the model over (70B: 4 x 80 GB, or 2 with fp8)", aliases=("--tp",), metavar="N"),
    )
    max_model_len: int | None = field(
        default=_VLLM.max_model_len, metadata=opt("context length (BiMediX2 trained at 4096)", metavar="N")
    )
    vllm_dtype: str = field(default=_VLLM.dtype, metadata=opt("vLLM --dtype", metavar="DTYPE"))
    gpu_memory_utilization: float | None = field(
        default=_VLLM.gpu_memory_utilization, metadata=opt("vLLM --gpu-memory-utilization", metavar="FRACTION")
    )
    template_file: Path | None = field(
        default=None,
        metadata=opt(
            "where to write the chat template; when not given: ~/.cache/bimedix2/vllm/NAME.jinja",
            metavar="FILE",
        ),
    )
    chat_template: str = field(
        default="auto",
        metadata=opt(
            "template handed to vLLM: bimedix2-llama3, phi3-vision, or auto (phi3-vision for a local phi3_v "
            "checkpoint such as BiMediX2-4B, else bimedix2-llama3)",
            metavar="NAME",
        ),
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=opt("let vLLM run the checkpoint's own code (needed for BiMediX2-4B, phi3_v); never implied"),
    )
    dry_run: bool = field(default=False, metadata=opt("print the vLLM command and template path, do not run"))
    vllm_arg: tuple[str, ...] = field(
        default=_VLLM.extra_args, metadata=opt("extra argument passed to vLLM (repeatable)", metavar="ARG")
    )


_NETWORK_FIELDS = ("host", "port", "api_key", "served_model_name")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="OpenAI-compatible API (/v1/chat/completions, /v1/models, /health) and a web chat at /"
    )
    add_model_options(serve)
    add_engine_options(serve, choose_engine=False)
    add_dataclass_options(serve.add_argument_group("network"), NetworkOptions)
    group = serve.add_argument_group("serving")
    group.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML file of these serving options (keys: host, port, max_batch_size, timeout, "
        "max_body_mb, ...); flags given here win",
    )
    add_dataclass_options(group, ServeOptions, exclude=_NETWORK_FIELDS)
    # --trust-remote-code comes with the model options here; it fills VllmFlags.trust_remote_code too
    add_dataclass_options(serve.add_argument_group("vllm"), VllmFlags, exclude=("trust_remote_code",))
    serve.set_defaults(func=run_serve)

    vllm = subparsers.add_parser(
        "serve-vllm", help="serve through vLLM's OpenAI server on GPUs, with BiMediX2's template"
    )
    vllm.add_argument("--model", "-m", required=True, help="transformers Llava checkpoint (e.g. MBZUAI/BiMediX2-8B-hf)")
    add_dataclass_options(vllm.add_argument_group("network"), NetworkOptions)
    add_dataclass_options(vllm.add_argument_group("vllm"), VllmFlags)
    vllm.add_argument("--allow-local-images", default=None, metavar="DIR", help="vLLM --allowed-local-media-path")
    vllm.set_defaults(func=run_serve_vllm)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """`ServeOptions` from `--config` (if given) and the flags."""
    base = load_yaml(args.config) if args.config is not None else {}
    try:
        return dataclass_from_args(ServeOptions, args, base=base)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}" if args.config is not None else str(exc)) from None


def run_serve(args: argparse.Namespace) -> int:
    opts = serve_options(args)
    if opts.engine == "vllm":
        if args.model is None:
            raise ConfigError(
                "--engine vllm needs --model (a transformers Llava checkpoint, e.g. MBZUAI/BiMediX2-8B-hf)"
            )
        local = str(opts.allow_local_images[0]) if opts.allow_local_images else None
        return _launch_vllm(args.model, opts, dataclass_from_args(VllmFlags, args), local)
    import uvicorn

    from ..serve.api import create_app

    key = opts.api_key or api_key_from_env()
    if not _is_loopback(opts.host) and key is None:
        print(
            f"bimedix2: warning: listening on {opts.host} without an API key; anyone who can reach it can use it",
            file=sys.stderr,
        )
    for directory in opts.allow_local_images:
        if not directory.is_dir():
            raise ConfigError(f"--allow-local-images {directory}: not a directory")
    config = opts.to_config(args.model, key)
    engine = build_engine(args, engine=opts.engine, parallel=opts.max_batch_size)
    print(
        f"bimedix2 serving {config.model_id!r} on http://{config.host}:{config.port}/ (web chat at /, API at /v1). "
        f"{RESEARCH_NOTICE}",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(engine, config),
        host=config.host,
        port=config.port,
        log_level="info" if args.verbose else "warning",
        access_log=False,  # uvicorn's access log writes query strings (?api_key=...); --log-requests has its own
        timeout_keep_alive=config.keep_alive_s,  # type: ignore[arg-type]  # a float works (loop.call_later)
        timeout_graceful_shutdown=config.shutdown_grace_s,  # type: ignore[arg-type]
    )
    return 0


def run_serve_vllm(args: argparse.Namespace) -> int:
    network = dataclass_from_args(NetworkOptions, args)
    return _launch_vllm(args.model, network, dataclass_from_args(VllmFlags, args), args.allow_local_images)


def _launch_vllm(model: str, network: NetworkOptions, flags: VllmFlags, allow_local_images: str | None) -> int:
    from ..model.loader import cache_dir
    from ..serve.vllm import (
        build_command,
        check_model,
        launch_env,
        printable,
        template_for,
        vllm_available,
        write_template,
    )

    check_model(model)
    name = template_for(model, flags.chat_template)
    template = write_template(flags.template_file or cache_dir() / "vllm" / f"{name}.jinja", name)
    options = VllmOptions(
        model=model,
        host=network.host,
        port=network.port,
        served_model_name=network.served_model_name,
        tensor_parallel_size=flags.tensor_parallel_size,
        max_model_len=flags.max_model_len,
        dtype=flags.vllm_dtype,
        gpu_memory_utilization=flags.gpu_memory_utilization,
        allowed_local_media_path=allow_local_images,
        trust_remote_code=flags.trust_remote_code,
        extra_args=flags.vllm_arg,
    )
    cmd = build_command(options, template)
    key = network.api_key or api_key_from_env()
    if flags.dry_run:
        print(printable(cmd))
        print(f"# chat template: {template}; API key: {'from $VLLM_API_KEY' if key else 'none'}", file=sys.stderr)
        return 0
    if not vllm_available():
        raise ConfigError(
            "vLLM is not installed here (it needs a CUDA GPU host): `pip install vllm` there, "
            "or run with --dry-run to print the command"
        )
    print(f"{printable(cmd)}\n{RESEARCH_NOTICE}", file=sys.stderr)
    os.execvpe(cmd[0], cmd, launch_env(os.environ, key))
    return 0  # not reached
