"""`bimedix2 merge`: base model + trained projector + LoRA adapter -> one transformers checkpoint.

The output is a plain `LlavaForConditionalGeneration` (or causal LM) checkpoint with its
processor and chat template, loadable by `bimedix2 ask --model OUT`, `load_model`, vLLM and
transformers alike.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import TrainingError
from ..fileio import atomic_directory
from ..model.compose import DEFAULT_VISION_TOWER, ComposeSpec, compose_llava
from ..model.loader import LoadedModel, LoadOptions, load_model
from ..types import RESEARCH_NOTICE
from .modeling import PROJECTOR_FILE, load_projector
from .recipes import CONFIG_FILE, FINAL_DIR


@dataclass(frozen=True)
class MergeSources:
    """What goes into a merged checkpoint."""

    base: str | None
    base_format: str
    chat_template: str
    adapter: Path | None
    projector: Path | None
    language_model: str | None = None  # the run composed its base: this LM ...
    vision_tower: str | None = None  # ... with this CLIP tower (None: the default tower)


def find_sources(path: Path, base: str | None = None) -> MergeSources:
    """Locate adapter, projector and base model from a run directory, its final/ or a checkpoint-N."""
    if not path.is_dir():
        raise TrainingError(f"{path}: not a directory (give a training run, its final/ or a checkpoint-N)")
    weights = path / FINAL_DIR if (path / FINAL_DIR).is_dir() else path
    adapter = next((d for d in (weights / "adapter", weights) if (d / "adapter_config.json").is_file()), None)
    projector = weights / PROJECTOR_FILE if (weights / PROJECTOR_FILE).is_file() else None
    if adapter is None and projector is None:
        raise TrainingError(f"{weights}: no adapter (adapter_config.json) and no {PROJECTOR_FILE} to merge")
    config = next((c for c in (path / CONFIG_FILE, path.parent / CONFIG_FILE) if c.is_file()), None)
    model_cfg: dict[str, Any] = {}
    if config is not None:
        model_cfg = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("model") or {}
    language_model = model_cfg.get("language_model") if base is None else None
    if base is None:
        if config is None:
            raise TrainingError(f"{path}: no {CONFIG_FILE} beside it to name the base model; pass --base")
        base = model_cfg.get("path")
    if language_model is not None and projector is None:
        raise TrainingError(f"{weights}: the run composed its base, but holds no {PROJECTOR_FILE} to put in it")
    return MergeSources(
        base=base,
        base_format=str(model_cfg.get("format", "auto")),
        chat_template=str(model_cfg.get("chat_template", "auto")),
        adapter=adapter,
        projector=projector,
        language_model=language_model,
        vision_tower=model_cfg.get("vision_tower"),
    )


def build_merged(sources: MergeSources, *, dtype: str = "float32", stage1_projector: str | None = None) -> LoadedModel:
    """Load (or compose) the base, put the trained projector in, fold the LoRA weights into the base weights."""
    options = LoadOptions(format=sources.base_format, chat_template=sources.chat_template, device="cpu", dtype=dtype)
    if sources.language_model is not None:
        spec = ComposeSpec(sources.language_model, sources.vision_tower or DEFAULT_VISION_TOWER)
        loaded = compose_llava(spec, dataclasses.replace(options, format="auto"))
    else:
        loaded = load_model(sources.base, options)
    model = loaded.model
    if stage1_projector:
        load_projector(model, Path(stage1_projector))
    if sources.projector is not None:
        load_projector(model, sources.projector)
    if sources.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(sources.adapter)).merge_and_unload()
    model.eval()
    return LoadedModel(
        model,
        loaded.tokenizer,
        loaded.processor,
        loaded.template,
        loaded.info,
        loaded.image_aspect_ratio,
        loaded.image_token_id,
        loaded.tokens_per_image,
    )


def merge(path: Path, out: Path, *, base: str | None = None, dtype: str = "float32") -> Path:
    """Write the merged checkpoint to `out` (atomically; refuses to overwrite)."""
    if out.exists():
        raise TrainingError(f"{out} already exists; choose a new output directory")
    sources = find_sources(path, base)
    loaded = build_merged(sources, dtype=dtype)
    with atomic_directory(out) as tmp:
        loaded.model.config.use_cache = True
        loaded.model.save_pretrained(tmp)
        holder = loaded.processor if loaded.processor is not None else loaded.tokenizer
        holder.chat_template = loaded.template.jinja  # the template it was trained with travels along
        if loaded.processor is not None:
            loaded.tokenizer.chat_template = loaded.template.jinja
        holder.save_pretrained(tmp)
        info = {
            "base": sources.base or sources.language_model,
            "vision_tower": sources.vision_tower if sources.language_model else None,
            "adapter": str(sources.adapter) if sources.adapter else None,
            "projector": str(sources.projector) if sources.projector else None,
            "chat_template": loaded.template.name,
            "notice": RESEARCH_NOTICE,
        }
        (tmp / "bimedix2_merge.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out
