"""``phi3-v``: Phi-3-vision checkpoints with their own custom code (MBZUAI/BiMediX2-4B).

BiMediX2-4B is fine-tuned from microsoft/Phi-3.5-vision-instruct: `model_type` "phi3_v", and its
model, processor and image processor are Python files inside the checkpoint that transformers
runs only with `trust_remote_code` (their `auto_map`). That code was written for transformers
4.4x; transformers 5 removed what it imports (`transformers.modeling_attn_mask_utils`), and its
image processor needs torchvision. transformers has no native Phi-3-vision class (`phi3` is the
text model, `phi4_multimodal` another architecture), so this format loads nothing in-process:
it reads the checkpoint's code as text (never running it), checks every import against the
installed packages, and says exactly what fails and how to serve the model instead (vLLM
implements Phi-3-vision natively). Its chat template is Phi-3.5-vision's own, with numbered
image placeholders, for vLLM and for `bimedix2 info`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ...conversation import ChatTemplate
from ...errors import ModelLoadError
from ..base import LoadedModel, LoadOptions, config_model_type, read_config

# Phi-3.5-vision-instruct's template (`<|role|>\n...<|end|>\n`, then `<|assistant|>\n`), with image
# parts rendered as numbered placeholders `<|image_N|>\n` (counted across the conversation, as
# Phi-3-vision's processor requires) at the start of the turn that carries them. No BOS: the
# processor's tokenizer adds `<s>` itself (`add_bos_token`).
PHI3_VISION_TEMPLATE = (
    "{% set ns = namespace(image=0) %}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}"
    "{% set ns.image = ns.image + 1 %}{{ '<|image_' ~ ns.image ~ '|>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{ '<|assistant|>\n' }}{% endif %}"
)
CROP_SIZE = 336  # Phi-3-vision's CLIP ViT-L/14-336 sees the image as crops of this size
PHI3_VISION = ChatTemplate("phi3-vision", PHI3_VISION_TEMPLATE, ("<|end|>", "<|endoftext|>"))

# Files whose `auto_map` names custom classes: the model's config, the processors', the tokenizer's.
_AUTO_MAP_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer_config.json")
_VLLM_HINT = (
    "serve it with `bimedix2 serve-vllm --model {src} --vllm-arg=--trust-remote-code` (vLLM implements "
    "Phi-3-vision natively and runs only the checkpoint's processor), or load it with transformers 4.4x "
    "(the version its code was written for) and torchvision in an environment of its own"
)


@dataclass(frozen=True)
class CodeProblem:
    """One reason the checkpoint's custom code cannot run here: a file, a line, what is missing."""

    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.what}" if self.line else f"{self.file}: {self.what}"


class Phi3VFormat:
    """A Phi-3-vision checkpoint (config.json model_type 'phi3_v') that ships its own model code."""

    name = "phi3-v"
    summary = "Phi-3-vision checkpoint with custom code (BiMediX2-4B)"
    quantizations = ("none",)

    def detect(self, path: Path) -> bool:
        return config_model_type(path) == "phi3_v"

    def load(self, path: Path, options: LoadOptions) -> LoadedModel:
        """Always raises: with `trust_remote_code` off, how to opt in; with it on, why it cannot run here."""
        problems = remote_code_problems(path)
        if not options.trust_remote_code:
            raise ModelLoadError(_opt_in_message(path, problems))
        if problems:
            raise ModelLoadError(_cannot_run_message(path, problems))
        raise ModelLoadError(
            f"{path}: its custom code imports cleanly here, but the toolkit's engine cannot drive Phi-3-vision "
            "in-process: its processor numbers image placeholders (<|image_N|>), gives each image a token count "
            "that depends on its high-resolution crops and marks image positions with negative ids, where the "
            f"engine expects one <image> token per image feature; {_VLLM_HINT.format(src=path)}"
        )

    def describe(self, path: Path) -> dict[str, Any]:
        """What `bimedix2 info` shows for a checkpoint this toolkit cannot load: read from its files only."""
        crops, per_crop = _image_settings(path)
        side = math.isqrt(crops)  # a square image is cut into side x side crops
        tokenizer = _read_json(path / "tokenizer_config.json")
        bos = tokenizer.get("bos_token", "<s>")
        bos = bos.get("content", "<s>") if isinstance(bos, dict) else bos
        adds = (
            f"adds {bos} through its tokenizer (add_bos_token)" if tokenizer.get("add_bos_token", True) else "adds none"
        )
        return {
            "family": "phi3-v",
            "chat_template": PHI3_VISION.name,
            "image_size": CROP_SIZE,
            "image_tokens": None,  # not one number: it depends on the image's shape
            "image_tokens_note": f"(rows*cols+1)*{per_crop} + 1 + (rows+1)*{math.isqrt(per_crop)} for an image "
            f"cut into rows x cols {CROP_SIZE}-px crops, rows*cols <= num_crops {crops}; "
            f"{image_tokens(side, side, per_crop)} for a square image",
            "bos": f"template renders no BOS; Phi-3-vision's processor {adds}",
            "stop_tokens": list(PHI3_VISION.stop_tokens),
            "image_aspect_ratio": "kept (high-resolution crops, padded with white to whole crops)",
            "vocab_size": read_config(path).get("vocab_size"),
            "tokenizer_size": None,
        }


def image_tokens(rows: int, cols: int, per_crop: int = 144) -> int:
    """Image tokens Phi-3-vision gives an image cut into rows x cols crops: crops + global view + separators."""
    return (rows * cols + 1) * per_crop + 1 + (rows + 1) * math.isqrt(per_crop)


def remote_code_problems(path: Path) -> list[CodeProblem]:
    """Everything the checkpoint's custom code imports that this environment lacks (the code is read, not run)."""
    problems: list[CodeProblem] = []
    pending = [(module, "named in auto_map") for module in sorted(auto_map_modules(path))]
    seen: set[str] = set()
    while pending:
        module, origin = pending.pop(0)
        if module in seen:
            continue
        seen.add(module)
        file = path / f"{module}.py"
        if not file.is_file():
            problems.append(CodeProblem(file.name, 0, f"{origin} but not in the checkpoint"))
            continue
        found, relative = _scan_file(file)
        problems += found
        pending += [(name, f"imported by {file.name}") for name in sorted(relative - seen)]
    return sorted(problems, key=lambda p: (p.file, p.line))


def auto_map_modules(path: Path) -> set[str]:
    """Module names (`modeling_phi3_v`, ...) that the checkpoint's `auto_map` entries point at."""
    modules: set[str] = set()
    for name in _AUTO_MAP_FILES:
        auto_map = _read_json(path / name).get("auto_map")
        if not isinstance(auto_map, dict):
            continue
        for ref in auto_map.values():
            for item in ref if isinstance(ref, list) else [ref]:
                if isinstance(item, str) and "." in item:
                    modules.add(item.split("--")[-1].rsplit(".", 1)[0])
    return modules


def _scan_file(file: Path) -> tuple[list[CodeProblem], set[str]]:
    """Problems in one file's imports (and in attributes it uses of imported transformers objects)."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=file.name)
    except (SyntaxError, UnicodeDecodeError) as exc:
        return [CodeProblem(file.name, 0, f"cannot be parsed ({exc})")], set()
    problems: list[CodeProblem] = []
    relative: set[str] = set()
    imported: dict[str, Any] = {}
    for node in _guarded_imports(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            relative.add(node.module or "")
        elif isinstance(node, ast.ImportFrom):
            problems += _check_from_import(file.name, node, imported)
        else:
            problems += [_missing(file.name, node.lineno, a.name) for a in node.names if not _module_exists(a.name)]
    problems += _check_attributes(file.name, tree, imported)
    return [p for p in problems if p is not None], relative - {""}


def _guarded_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run unconditionally: those under `try: ... except ImportError` are optional."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            optional |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in optional]


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)} if handler.type else {"*"}
    return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "*"})


def _check_from_import(file: str, node: ast.ImportFrom, imported: dict[str, Any]) -> list[CodeProblem]:
    module_name = node.module or ""
    if not _module_exists(module_name):
        return [_missing(file, node.lineno, module_name)]
    if module_name.split(".")[0] != "transformers":
        return []
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the answer
        return [CodeProblem(file, node.lineno, f"{module_name} fails to import: {type(exc).__name__}: {exc}")]
    problems = []
    for alias in node.names:
        if hasattr(module, alias.name) or _module_exists(f"{module_name}.{alias.name}"):
            imported[alias.asname or alias.name] = getattr(module, alias.name, None)
        else:
            problems.append(CodeProblem(file, node.lineno, f"{module_name}.{alias.name} {_absent_in('transformers')}"))
    return problems


def _check_attributes(file: str, tree: ast.Module, imported: dict[str, Any]) -> list[CodeProblem]:
    """`DynamicCache.from_legacy_cache` and the like: attributes used on imported transformers classes."""
    problems: dict[str, CodeProblem] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = imported.get(node.value.id)
            if owner is not None and isinstance(owner, type) and not hasattr(owner, node.attr):
                what = f"{node.value.id}.{node.attr}"
                problems.setdefault(what, CodeProblem(file, node.lineno, f"{what} {_absent_in('transformers')}"))
    return list(problems.values())


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _missing(file: str, line: int, module: str) -> CodeProblem:
    top = module.split(".")[0]
    if top == "transformers":
        return CodeProblem(file, line, f"{module} {_absent_in('transformers')}")
    return CodeProblem(file, line, f"needs {module}, which is not installed")


def _absent_in(package: str) -> str:
    try:
        return f"does not exist in the installed {package} {version(package)}"
    except PackageNotFoundError:
        return f"needs {package}, which is not installed"


def _opt_in_message(path: Path, problems: list[CodeProblem]) -> str:
    message = (
        f"{path} is a Phi-3-vision (phi3_v) checkpoint that ships its own model code "
        f"({', '.join(sorted(f'{m}.py' for m in auto_map_modules(path)))}); the toolkit runs a checkpoint's code "
        "only when asked: pass --trust-remote-code (LoadOptions(trust_remote_code=True)). "
    )
    if problems:
        more = f", and {len(problems) - 2} more" if len(problems) > 2 else ""
        message += f"It cannot run in this environment in any case ({'; '.join(map(str, problems[:2]))}{more}); "
    return message + _VLLM_HINT.format(src=path)


def _cannot_run_message(path: Path, problems: list[CodeProblem]) -> str:
    shown = "; ".join(str(p) for p in problems[:6])
    more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
    written_for = read_config(path).get("transformers_version", "4.4x")
    return (
        f"{path}: the checkpoint's custom code (written for transformers {written_for}) cannot run here: "
        f"{shown}{more}. To use it, {_VLLM_HINT.format(src=path)}"
    )


def _image_settings(path: Path) -> tuple[int, int]:
    """(num_crops, image tokens per 336-px crop) from the checkpoint's image-processor config."""
    raw = _read_json(path / "preprocessor_config.json")
    return int(raw.get("num_crops", 4)), int(raw.get("num_img_tokens", 144))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
