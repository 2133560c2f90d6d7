"""Loading a GGUF for llama.cpp: the weights, llama.cpp's tokenizer, the chat template and a vision projector.

`load_llama_cpp(path, mmproj=...)` returns a `LlamaCppModel`: a `LoadedModel` whose runtime is a
llama.cpp model handle (no transformers model is built: memory is the point) plus, for images, a
libmtmd context for the `mmproj` GGUF. The llama.cpp engine backend (`Engine(loaded,
backend="llama-cpp")`) creates its context (KV cache, parallel sequences) from it.

Checks, each a `ModelLoadError` naming the file: not a GGUF, a projector passed as the model, a
model without `tokenizer.chat_template` (unless a template is named), an mmproj that is not a
projector or whose output width is not the model's hidden size, and an mmproj whose image-token
count (as libmtmd tokenizes an image) differs from the toolkit's (image_size / patch_size)^2.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..conversation import BIMEDIX2_LLAMA3, BUILTIN_TEMPLATES, IMAGE_PLACEHOLDER, ChatTemplate
from ..errors import ModelLoadError
from ..types import ModelInfo
from .base import LoadedModel
from .llama_cpp_lib import clear_errors, import_llama_cpp, mtmd_orders_cls_first, with_errors
from .llama_cpp_vocab import LlamaCppTokenizer

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
NO_IMAGE_TOKEN = -1  # image positions in `input_ids` when the vocabulary has no `<image>` entry


@dataclass(frozen=True)
class LlamaCppOptions:
    """How llama.cpp runs a model (the engine backend reads these when it creates its context)."""

    context: int = 4096  # tokens per sequence; 0: the model's trained context
    parallel: int = 1  # sequences generated together (serve: its --max-batch-size)
    threads: int = 0  # 0: every core (os.cpu_count())
    batch: int = 512  # prompt tokens per llama_decode call
    # llama.cpp's extra weight buffers (CPU repacking / AMX). Off by default: the AMX path crashes on
    # AMX CPUs we measured, and repacking made prompts slower on the AMD CPU benchmarked (docs/cpu.md);
    # `BIMEDIX2_LLAMA_CPP_EXTRA_BUFFERS=1` turns them on.
    extra_buffers: bool = field(default_factory=lambda: os.environ.get("BIMEDIX2_LLAMA_CPP_EXTRA_BUFFERS") == "1")
    verbose: bool = False  # print llama.cpp's own log

    def n_threads(self) -> int:
        """The thread count llama.cpp gets."""
        return self.threads or os.cpu_count() or 1


@dataclass(frozen=True)
class MmprojFacts:
    """What a projector GGUF says about itself (read with the `gguf` package, before libmtmd loads it)."""

    path: Path
    arch: str
    projector_type: str | None
    projector_width: int | None
    image_size: int | None
    patch_size: int | None
    has_class_embedding: bool = False  # a CLIP tower's CLS token (v.class_embd)

    @property
    def tokens_per_image(self) -> int | None:
        """Image tokens an `mlp` projector gives per image: one per patch, CLS dropped."""
        if not self.image_size or not self.patch_size:
            return None
        return (self.image_size // self.patch_size) ** 2


class LlamaCppHandle:
    """Owns the llama.cpp model and the libmtmd context; `close` frees them (also on garbage collection)."""

    def __init__(self, lib: ModuleType, mtmd: ModuleType, model: Any, path: Path) -> None:
        self.lib = lib
        self.mtmd = mtmd
        self.model = model
        self.vocab = lib.llama_model_get_vocab(model)
        self.path = path
        self.vision: Any | None = None  # mtmd_context, set by `attach_mmproj`
        self.lock = threading.RLock()  # libmtmd is not thread-safe: tokenizing and encoding images share it

    def close(self) -> None:
        """Free the projector context and the model (idempotent)."""
        if self.vision is not None:
            self.mtmd.mtmd_free(self.vision)
            self.vision = None
        if self.model is not None:
            self.lib.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


@dataclass(frozen=True)
class LlamaCppModel(LoadedModel):
    """A GGUF loaded into llama.cpp; `model` and `processor` are None (there is no transformers model)."""

    handle: LlamaCppHandle | None = None
    options: LlamaCppOptions = LlamaCppOptions()
    mmproj: MmprojFacts | None = None

    @property
    def has_vision(self) -> bool:
        """Whether an mmproj projector is loaded."""
        return self.handle is not None and self.handle.vision is not None

    @property
    def device(self) -> str:  # type: ignore[override]
        """llama.cpp runs on the CPU here."""
        return "cpu"

    @property
    def image_size(self) -> int | None:
        """The projector's input size in pixels."""
        return self.mmproj.image_size if self.mmproj is not None else None


def is_gguf(path: Path) -> bool:
    """Whether `path` is a file starting with the GGUF magic bytes."""
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def read_mmproj(path: Path) -> MmprojFacts:
    """The projector facts libmtmd will use, from the file's metadata and tensor shapes."""
    import gguf

    if not is_gguf(path):
        raise ModelLoadError(f"--mmproj {path}: {'not a GGUF file' if path.is_file() else 'no such file'}")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ModelLoadError(f"--mmproj {path}: unreadable GGUF ({exc})") from None

    def value(key: str) -> Any:
        fld = reader.get_field(key)
        return None if fld is None else fld.contents()

    layers = {}
    for tensor in reader.tensors:
        parts = tensor.name.split(".")
        if len(parts) == 3 and parts[0] == "mm" and parts[1].isdigit() and parts[2] == "weight":
            layers[int(parts[1])] = tensor
    width = int(layers[max(layers)].shape[-1]) if layers else None  # GGUF shapes list the row length first
    return MmprojFacts(
        path=path,
        arch=str(value("general.architecture")),
        projector_type=value("clip.projector_type") or value("clip.vision.projector_type"),
        projector_width=width,
        image_size=value("clip.vision.image_size"),
        patch_size=value("clip.vision.patch_size"),
        has_class_embedding=any(t.name == "v.class_embd" for t in reader.tensors),
    )


def check_mmproj(facts: MmprojFacts, model_path: Path, hidden_size: int) -> None:
    """Refuse a projector file that is not one, or that projects to another model's width."""
    if facts.arch != "clip":
        raise ModelLoadError(f"--mmproj {facts.path} is a {facts.arch!r} model, not a vision projector (arch 'clip')")
    if facts.projector_width is None:
        raise ModelLoadError(f"--mmproj {facts.path} has no mm.* projector tensors")
    if facts.projector_width != hidden_size:
        raise ModelLoadError(
            f"--mmproj {facts.path.name} projects images to width {facts.projector_width}, but {model_path.name} has "
            f"hidden size {hidden_size}: the projector belongs to another model; export both from the same checkpoint"
        )


def meta_str(lib: ModuleType, model: Any, key: str) -> str | None:
    """A string metadata value of the loaded model; None when the file has no such key."""
    capacity = 256
    while True:
        buf = ctypes.create_string_buffer(capacity)
        n = lib.llama_model_meta_val_str(model, key.encode(), buf, capacity)
        if n < 0:
            return None
        if n < capacity:
            return buf.value.decode("utf-8", errors="replace")
        capacity = n + 1


def pick_template(choice: str, own: str | None, tokenizer: LlamaCppTokenizer, path: Path) -> ChatTemplate:
    """A built-in template by name, else the GGUF's `tokenizer.chat_template` ("auto" / "model")."""
    if choice in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[choice]
    if choice not in ("auto", "model"):
        raise ModelLoadError(f"unknown chat template {choice!r}; use auto, model or {', '.join(BUILTIN_TEMPLATES)}")
    if not own:
        raise ModelLoadError(
            f"{path} has no tokenizer.chat_template, so the prompt format is unknown; name a template "
            "explicitly (e.g. --template bimedix2-llama3) or re-export with `bimedix2 export gguf`"
        )
    if own == BIMEDIX2_LLAMA3.jinja:
        return BIMEDIX2_LLAMA3
    vocab = tokenizer.get_vocab()
    stops = tuple(t for t in (tokenizer.eos_token, "<|eot_id|>", "<|im_end|>") if t and t in vocab)
    return ChatTemplate("model", own, tuple(dict.fromkeys(stops)))


def load_weights(lib: ModuleType, path: Path, options: LlamaCppOptions) -> Any:
    """The llama.cpp model of the GGUF at `path` (memory-mapped; extra buffers as `options` says)."""
    if not is_gguf(path):
        raise ModelLoadError(f"{path}: {'not a GGUF file' if path.is_file() else 'no such file'}")
    params = lib.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_extra_bufts = options.extra_buffers
    clear_errors()
    model = lib.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        if _gguf_arch(path) == "clip":
            raise ModelLoadError(f"{path} is a vision projector (mmproj), not a language model; pass it as --mmproj")
        raise ModelLoadError(with_errors(f"{path}: llama.cpp could not load this GGUF"))
    return model


def _gguf_arch(path: Path) -> str | None:
    """general.architecture of a GGUF file, read with the `gguf` package (None when unreadable)."""
    import gguf

    try:
        fld = gguf.GGUFReader(path).get_field("general.architecture")
    except (ValueError, OSError):
        return None
    return None if fld is None else str(fld.contents())


def projector_beside(path: Path) -> Path | None:
    """The one `mmproj*.gguf` file in the model's folder (as `bimedix2 export gguf` writes it), if exactly one."""
    found = sorted(p for p in path.parent.glob("mmproj*.gguf") if p.is_file())
    return found[0] if len(found) == 1 else None


def load_llama_cpp(
    path: str | Path,
    *,
    mmproj: str | Path | None = None,
    template: str = "auto",
    options: LlamaCppOptions | None = None,
    image_aspect_ratio: str | None = None,
) -> LlamaCppModel:
    """Load a language-model GGUF (and a vision projector GGUF) for the llama.cpp engine backend."""
    options = options or LlamaCppOptions()
    path = Path(path).expanduser()
    lib, mtmd = import_llama_cpp(verbose=options.verbose)
    handle = LlamaCppHandle(lib, mtmd, load_weights(lib, path, options), path)
    try:
        return _finish_load(handle, mmproj, template, options, image_aspect_ratio)
    except BaseException:
        handle.close()
        raise


def _finish_load(
    handle: LlamaCppHandle,
    mmproj: str | Path | None,
    template: str,
    options: LlamaCppOptions,
    image_aspect_ratio: str | None,
) -> LlamaCppModel:
    lib, path = handle.lib, handle.path
    arch = meta_str(lib, handle.model, "general.architecture")
    if arch == "clip":
        raise ModelLoadError(f"{path} is a vision projector (mmproj), not a language model; pass it as --mmproj")
    own = lib.llama_model_chat_template(handle.model, None)
    tokenizer = LlamaCppTokenizer(lib, handle.vocab, own.decode("utf-8") if own else None)
    chat = pick_template(template, tokenizer.chat_template, tokenizer, path)
    facts = attach_mmproj(handle, Path(mmproj).expanduser(), options) if mmproj is not None else None
    image_token_id = tokens = None
    if facts is not None:
        found = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        image_token_id = found if found is not None else NO_IMAGE_TOKEN
        tokens = facts.tokens_per_image
    info = ModelInfo(
        name=str(path),
        source_format="gguf",
        family="llava" if facts is not None else "causal-lm",
        chat_template=chat.name,
        device="cpu",
        dtype=_model_desc(lib, handle.model) or "gguf",
        parameters=int(lib.llama_model_n_params(handle.model)),
        image_size=facts.image_size if facts is not None else None,
        image_tokens=tokens,
    )
    return LlamaCppModel(
        model=None,  # type: ignore[arg-type]
        tokenizer=tokenizer,  # type: ignore[arg-type]
        processor=None,
        template=chat,
        info=info,
        image_aspect_ratio=image_aspect_ratio or "pad",
        image_token_id=image_token_id,
        tokens_per_image=tokens,
        handle=handle,
        options=options,
        mmproj=facts,
    )


def _model_desc(lib: ModuleType, model: Any) -> str:
    buf = ctypes.create_string_buffer(256)
    lib.llama_model_desc(model, buf, len(buf))
    return buf.value.decode("utf-8", errors="replace")


def attach_mmproj(handle: LlamaCppHandle, path: Path, options: LlamaCppOptions) -> MmprojFacts:
    """Check the projector against the model, load it into libmtmd, and check its image-token count."""
    facts = read_mmproj(path)
    check_mmproj(facts, handle.path, int(handle.lib.llama_model_n_embd(handle.model)))
    mtmd = handle.mtmd
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.print_timings = False
    params.n_threads = options.n_threads()
    params.warmup = False
    clear_errors()
    ctx = mtmd.mtmd_init_from_file(str(path).encode(), handle.model, params)
    if not ctx:
        raise ModelLoadError(with_errors(f"--mmproj {path}: libmtmd could not load this projector"))
    handle.vision = ctx
    if not mtmd.mtmd_support_vision(ctx):
        raise ModelLoadError(f"--mmproj {path} has no vision encoder")
    expected = facts.tokens_per_image
    if not facts.image_size or expected is None:
        raise ModelLoadError(f"--mmproj {path} does not state clip.vision.image_size and clip.vision.patch_size")
    reported = image_token_count(handle, facts.image_size)
    if reported != expected:
        raise ModelLoadError(
            f"--mmproj {path.name}: libmtmd makes {reported} tokens of a {facts.image_size} px image, the toolkit "
            f"expects {expected} ((image_size / patch_size)^2); this projector type is not a LLaVA mlp projector"
        )
    if facts.has_class_embedding and not mtmd_orders_cls_first(handle.lib):
        log.warning(
            "--mmproj %s: this llama-cpp-python (%s) has llama.cpp#25814: libmtmd puts CLIP's CLS token after the "
            "patches, so every image token is one position off and answers about images differ from the "
            "transformers engine's. scripts/build-llama-cpp.sh builds 0.3.36 with the fix.",
            path.name,
            getattr(handle.lib, "__version__", "unknown version"),
        )
    return facts


def image_token_count(handle: LlamaCppHandle, size: int) -> int:
    """How many tokens libmtmd makes of one `size` x `size` image."""
    from .llama_cpp_images import ImageChunks

    with ImageChunks.of_rgb(handle, bytes(size * size * 3), size, size) as chunks:
        return chunks.image_tokens()
