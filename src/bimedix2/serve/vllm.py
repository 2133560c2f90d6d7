"""GPU-scale serving through vLLM's OpenAI server, with BiMediX2's chat template.

vLLM is CUDA-only, so this module only *builds* the launch command and writes the template
file; `bimedix2 serve-vllm` (or `bimedix2 serve --engine vllm`) then execs it on a GPU host.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..conversation import BIMEDIX2_LLAMA3, BUILTIN_TEMPLATES, ChatTemplate
from ..errors import ConfigError, ModelLoadError
from ..fileio import atomic_write_text
from ..model.formats import ConvertibleFormat, detect_format, get_format
from ..types import GenParams

# Checkpoint formats vLLM's own loaders read (a fact about vLLM, not about our registry). phi3-v
# (BiMediX2-4B): vLLM implements Phi3VForCausalLM but reads the checkpoint's config and processor
# through its custom code, so it needs --trust-remote-code (`VllmOptions.trust_remote_code`).
VLLM_FORMATS = ("hf-llava", "causal-lm", "gguf", "phi3-v")


@dataclass(frozen=True)
class VllmOptions:
    """What the vLLM launch needs. `model` must be a transformers Llava checkpoint (e.g. BiMediX2-8B-hf)."""

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None
    tensor_parallel_size: int = 1
    max_model_len: int | None = 4096
    dtype: str = "auto"
    gpu_memory_utilization: float | None = None
    allowed_local_media_path: str | None = None  # file:// image URLs only under this directory
    template: str = BIMEDIX2_LLAMA3.name
    max_images_per_prompt: int = 8
    trust_remote_code: bool = False  # let vLLM run the checkpoint's own code (phi3-v); never implied
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def vllm_templates() -> dict[str, ChatTemplate]:
    """The chat templates `serve-vllm` can hand to vLLM: the built-in ones and Phi-3.5-vision's (BiMediX2-4B)."""
    from ..model.formats.phi3_v import PHI3_VISION

    return {**BUILTIN_TEMPLATES, PHI3_VISION.name: PHI3_VISION}


def template_for(model: str, choice: str = "auto") -> str:
    """The template name for `model`: `choice`, or for "auto" phi3-vision when a local checkpoint is phi3-v."""
    if choice != "auto":
        if choice not in vllm_templates():
            raise ConfigError(f"unknown chat template {choice!r}. Available: auto, {', '.join(vllm_templates())}")
        return choice
    path = Path(model).expanduser()
    if path.exists():
        try:
            if detect_format(path) == "phi3-v":
                return "phi3-vision"
        except ModelLoadError:
            pass  # check_model reports what vLLM cannot load
    return BIMEDIX2_LLAMA3.name


def write_template(path: Path, template: str = BIMEDIX2_LLAMA3.name) -> Path:
    """Write a chat template (Jinja, Hugging Face dialect) where vLLM's --chat-template reads it."""
    templates = vllm_templates()
    if template not in templates:
        raise ConfigError(f"unknown chat template {template!r}. Available: {', '.join(templates)}")
    return atomic_write_text(path, templates[template].jinja)


def check_model(model: str) -> None:
    """Refuse local checkpoints of a format vLLM cannot load, naming the conversion that fixes it."""
    path = Path(model).expanduser()
    if not path.exists():
        return  # a Hub id: vLLM resolves it itself
    try:
        fmt = get_format(detect_format(path))
    except ModelLoadError:
        return  # nothing we recognise; vLLM reports what it cannot read
    if fmt.name in VLLM_FORMATS:
        return
    if isinstance(fmt, ConvertibleFormat) and fmt.converts_to in VLLM_FORMATS:
        raise ConfigError(
            f"{model} is in the {fmt.name} format ({fmt.summary}), which vLLM cannot load; convert it once with "
            f"`bimedix2 convert {model} OUT_DIR` and serve OUT_DIR (or use MBZUAI/BiMediX2-8B-hf)"
        )
    raise ConfigError(
        f"{model} is in the {fmt.name} format ({fmt.summary}), which vLLM cannot load "
        f"(it loads {', '.join(VLLM_FORMATS)})"
    )


def build_command(options: VllmOptions, template_path: Path) -> list[str]:
    """argv for `vllm serve` with our template, decoding defaults, parallelism and limits.

    The API key is never an argument (it would show in `ps`): `launch_env` passes it as $VLLM_API_KEY.
    """
    if options.tensor_parallel_size < 1:
        raise ConfigError("tensor_parallel_size must be at least 1")
    defaults = GenParams()
    cmd = [
        "vllm",
        "serve",
        options.model,
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--served-model-name",
        options.served_model_name or options.model,
        "--chat-template",
        str(template_path),
        "--chat-template-content-format",
        "openai",
        "--tensor-parallel-size",
        str(options.tensor_parallel_size),
        "--dtype",
        options.dtype,
        "--limit-mm-per-prompt",
        json.dumps({"image": options.max_images_per_prompt}),
        # the checkpoint's generation_config (its eos ids incl. <|eot_id|>), with the released temperature
        "--generation-config",
        "auto",
        "--override-generation-config",
        json.dumps({"temperature": defaults.temperature}),
    ]
    if options.max_model_len:
        cmd += ["--max-model-len", str(options.max_model_len)]
    if options.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
    if options.allowed_local_media_path:
        cmd += ["--allowed-local-media-path", options.allowed_local_media_path]
    if options.trust_remote_code:
        cmd.append("--trust-remote-code")
    cmd += list(options.extra_args)
    return cmd


def launch_env(environ: Mapping[str, str], api_key: str | None) -> dict[str, str]:
    """The environment for the vLLM process: $VLLM_API_KEY set from our key when there is one."""
    env = dict(environ)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return env


def printable(cmd: list[str]) -> str:
    """The command as one shell line."""
    return shlex.join(cmd)


def vllm_available() -> bool:
    """Whether the vllm package is importable here."""
    return importlib.util.find_spec("vllm") is not None
