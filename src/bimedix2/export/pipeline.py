"""`export_gguf`: any checkpoint the toolkit loads -> GGUF files for llama.cpp, Ollama and LM Studio.

Read top to bottom: check the options (before any work), load the checkpoint, write the language
model (F16/F32, then llama.cpp's quantizer for the other types), the projector for vision models,
read both back, then the Modelfile, README and export.json. Everything is written into a temporary
directory beside OUT_DIR and renamed onto it only when all of it succeeded.

Layout (the `publisher/model-name/` folder is what LM Studio's models directory expects):

    OUT_DIR/README.txt, Modelfile, export.json
    OUT_DIR/<publisher>/<name>-GGUF/<name>-<QUANT>.gguf
    OUT_DIR/<publisher>/<name>-GGUF/mmproj-<name>-<F16|F32>.gguf     (vision models)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..model.base import LoadOptions
from .common import DEFAULT_QUANT, QUANTIZED_TYPES, RESEARCH_ONLY, ExportError, check_quant, relative, safe_name
from .gguf_llm import LlmSummary, write_llm_gguf
from .gguf_mmproj import MmprojSummary, write_mmproj_gguf
from .info import check_mmproj_matches, read_gguf_info, require_chat_template
from .ollama import ExportedFiles, modelfile_text, readme_text, write_text
from .quantize import QuantReport, import_llama_cpp, llama_cpp_reads, llama_ftype, quantize_gguf


@dataclass(frozen=True)
class ExportResult:
    """Where the exported files are, and the resolved settings written to export.json."""

    out_dir: Path
    model_gguf: Path
    mmproj_gguf: Path | None
    modelfile: Path
    readme: Path
    config: dict[str, Any]


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse an OUT_DIR that is a file, or a non-empty directory unless `force`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ExportError(f"{out_dir} exists and is not empty; choose a new directory or pass --force to replace it")


@contextmanager
def staging_directory(out_dir: Path) -> Iterator[Path]:
    """A temporary directory beside `out_dir` that replaces it only if the block succeeds.

    An existing non-empty `out_dir` (allowed by --force) is moved aside first and put back if the
    export fails, so a failed export never loses the previous one.
    """
    from ..fileio import atomic_directory

    backup = None
    if out_dir.is_dir() and any(out_dir.iterdir()):
        backup = out_dir.with_name(f".{out_dir.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.replace(out_dir, backup)
    try:
        with atomic_directory(out_dir) as tmp:
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become OUT_DIR's mode
            yield tmp
    except BaseException:
        if backup is not None:
            shutil.rmtree(out_dir, ignore_errors=True)
            os.replace(backup, out_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _versions(quantized: bool) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["bimedix2", "gguf", "torch", "transformers"] + (["llama_cpp_python"] if quantized else [])
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def write_language_model(
    loaded: Any, model_dir: Path, name: str, quant: str, threads: int
) -> tuple[Path, LlmSummary, QuantReport | None]:
    """The language-model GGUF at `quant`: written directly (F16/F32) or quantized from an F16 intermediate."""
    final = model_dir / f"{name}-{quant}.gguf"
    if quant not in QUANTIZED_TYPES:
        return final, write_llm_gguf(loaded, final, quant, name=name), None
    intermediate = model_dir / f".{name}-F16.intermediate.gguf"
    summary = write_llm_gguf(loaded, intermediate, "F16", name=name)
    report = quantize_gguf(intermediate, final, quant, threads=threads)
    intermediate.unlink()
    return final, summary, report


def _config(
    src: str,
    quant: str,
    loaded: Any,
    llm: LlmSummary,
    report: QuantReport | None,
    mm: MmprojSummary | None,
    files: dict[str, Any],
) -> dict[str, Any]:
    """export.json's content: the resolved settings, what was written, and the library versions."""
    return {
        "notice": RESEARCH_ONLY,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": src,
        "source_format": loaded.info.source_format,
        "quant": quant,
        "files": files,
        "language_model": {
            "hidden_size": llm.hidden_size,
            "block_count": llm.block_count,
            "rope_type": llm.rope_type,
            "tokenizer": dataclasses.asdict(llm.vocab),
        },
        "quantization": None if report is None else dataclasses.asdict(report),
        "mmproj": None if mm is None else {k: v for k, v in dataclasses.asdict(mm).items() if k != "path"},
        "versions": _versions(report is not None),
    }


def export_gguf(
    src: str | Path,
    out_dir: str | Path,
    quant: str = DEFAULT_QUANT,
    *,
    name: str | None = None,
    publisher: str = "bimedix2",
    force: bool = False,
    load_options: LoadOptions | None = None,
    threads: int = 0,
) -> ExportResult:
    """Export the checkpoint `src` (any format `load_model` reads) to GGUF files in the new directory `out_dir`.

    Raises `ExportError` for a bad option, an unsupported model or a failed write (nothing is left
    behind), and the loader's `ModelLoadError` for a checkpoint that cannot be loaded.
    """
    from ..model.loader import load_model

    quant = check_quant(quant)
    if quant in QUANTIZED_TYPES:
        import_llama_cpp()
        llama_ftype(quant)
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    loaded = load_model(src, dataclasses.replace(load_options or LoadOptions(), device="cpu"))
    name = safe_name(name or Path(str(src)).name)
    folder = Path(safe_name(publisher)) / f"{name}-GGUF"
    try:
        with staging_directory(out_dir) as tmp:
            config = _write_all(loaded, str(src), tmp, folder, name, quant, threads)
    except OSError as exc:
        raise ExportError(f"writing the export failed ({exc.strerror or exc}); nothing was left at {out_dir}") from exc
    files = config["files"]
    return ExportResult(
        out_dir=out_dir,
        model_gguf=out_dir / files["model"],
        mmproj_gguf=out_dir / files["mmproj"] if files["mmproj"] else None,
        modelfile=out_dir / "Modelfile",
        readme=out_dir / "README.txt",
        config=config,
    )


def _write_all(loaded: Any, src: str, tmp: Path, folder: Path, name: str, quant: str, threads: int) -> dict[str, Any]:
    """Every file of the export, inside the staging directory `tmp`; returns export.json's content."""
    model_dir = tmp / folder
    model_dir.mkdir(parents=True)
    model_path, llm, report = write_language_model(loaded, model_dir, name, quant, threads)
    mm: MmprojSummary | None = None
    if loaded.has_vision:
        mm_type = "F32" if quant == "F32" else "F16"
        mm = write_mmproj_gguf(loaded, model_dir / f"mmproj-{name}-{mm_type}.gguf", mm_type, name=name)
    require_chat_template(model_path)  # read back: the template must survive the round trip
    llama_check = llama_cpp_reads(model_path)
    if mm is not None:
        check_mmproj_matches(model_path, mm.path)
    files = ExportedFiles(
        model=relative(model_path, tmp),
        mmproj=relative(mm.path, tmp) if mm else None,
        lmstudio_dir=folder.as_posix(),
        template_name=llm.vocab.chat_template,
        stop_tokens=llm.vocab.stop_tokens,
    )
    write_text(tmp / "Modelfile", modelfile_text(files))
    write_text(tmp / "README.txt", readme_text(files, source=src, quant=quant))
    sizes = {files.model: model_path.stat().st_size} | ({files.mmproj: mm.path.stat().st_size} if mm else {})
    info = read_gguf_info(model_path)
    file_map = {"model": files.model, "mmproj": files.mmproj, "lmstudio_dir": files.lmstudio_dir, "bytes": sizes}
    config = _config(src, quant, loaded, llm, report, mm, file_map)
    config["language_model"]["tensor_types"] = info.tensor_types
    config["language_model"]["llama_cpp_check"] = llama_check
    config = json.loads(json.dumps(config, default=str))
    write_text(tmp / "export.json", json.dumps(config, ensure_ascii=False, indent=2) + "\n")
    return config
