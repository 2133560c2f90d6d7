"""The two BiMediX2 training recipes, readable top to bottom.

Stage 1 (`run_stage1`): vision tower and LLM frozen, the projector learns to map CLIP
features into the LLM's embedding space from image-caption pairs (plain format).
Stage 2 (`run_stage2`): LoRA on the language model's linears, projector fine-tuned with its
own learning rate, on multi-turn chats rendered with the model's chat template.

Both: transformers `Trainer` (so accelerate/DeepSpeed/FSDP launch unchanged), the resolved
config saved as `OUTPUT/config.yaml`, periodic checkpoints under `OUTPUT/checkpoint-N`,
`resume=True` continuing from the last one, final weights under `OUTPUT/final/`
(`projector.safetensors`, and in stage 2 the peft adapter files `adapter_config.json` +
`adapter_model.safetensors` beside it; in stage 1 also `final/model/`, the whole model as a
transformers checkpoint), metrics in `OUTPUT/metrics.jsonl`.

The model is either an existing checkpoint (`model.path`) or composed from a Llama-family
causal LM and a CLIP tower with a fresh projector (`model.language_model`,
`model.vision_tower`; see `bimedix2.model.compose`), as the released scripts start.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import config_to_dict, save_config
from ..errors import TrainingError
from ..types import RESEARCH_NOTICE
from .config import TrainConfig
from .cpu_fsdp import fsdp_requested
from .data import RowDataset, TrainCollator
from .encode import ConversationEncoder, EncodeReport, EncoderSettings, encode_records
from .modeling import (
    attach_lora,
    cast_trainable_to_fp32,
    freeze_for_stage1,
    load_for_training,
    resolve_device,
    resolve_precision,
    trainable_summary,
)
from .records import read_records
from .trainer import BiMediXTrainer, ProgressAndMetrics, TokenMeter

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TRAINER_STATE_FILE = "trainer_state.json"
FINAL_DIR = "final"
MODEL_DIR = "model"  # stage 1: OUTPUT/final/model/, the whole model as a transformers checkpoint
# Fields that may change between an interrupted run and its resumption (they touch neither data order nor maths).
_RESUMABLE_CHANGES = {"logging_steps", "save_steps", "save_total_limit", "report_to", "dataloader_num_workers"}


@dataclass(frozen=True)
class TrainResult:
    """Where a finished run put its outputs, and what it did."""

    output_dir: Path
    final_dir: Path
    global_step: int
    train_loss: float
    encode: EncodeReport
    trainable: str


def run_stage1(cfg: TrainConfig, **kwargs: Any) -> TrainResult:
    """Stage 1: train the projector only (vision tower and LLM frozen) on image-caption pairs."""
    if cfg.stage != "stage1":
        raise TrainingError(f"config stage is {cfg.stage!r}; `train stage1` needs stage: stage1")
    return _run(cfg, **kwargs)


def run_stage2(cfg: TrainConfig, **kwargs: Any) -> TrainResult:
    """Stage 2: LoRA on the language model + projector with its own lr, on chat records."""
    if cfg.stage != "stage2":
        raise TrainingError(f"config stage is {cfg.stage!r}; `train stage2` needs stage: stage2")
    return _run(cfg, **kwargs)


def _run(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    show_progress: bool = True,
) -> TrainResult:
    from transformers import PrinterCallback

    out = Path(cfg.train.output_dir)
    last_checkpoint = _check_output_dir(out, cfg, resume)

    # 1. Hardware: CUDA when present, bf16 where supported (fp32 on CPU).
    device = resolve_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)

    # 2. Trainer arguments come first: under DeepSpeed ZeRO-3 they must exist before the model loads.
    args = training_arguments(cfg, device, precision)

    # 3. Model (loaded, or composed from its parts), frozen / adapted as the stage needs.
    loaded, model = prepare_model(cfg, device, precision)
    trainable = trainable_summary(model)
    log.info("%s", trainable)

    # 4. Data: records -> token ids + labels (token-span masking) -> rows (packed or not) -> batches.
    dataset, collator, report = prepare_data(cfg, loaded, show_progress=show_progress)

    # 5. Save the resolved config beside the outputs, then train.
    save_config(cfg, out / CONFIG_FILE)
    _write_data_report(out, report, len(dataset))
    meter = TokenMeter()
    trainer = BiMediXTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=loaded.tokenizer,
        projector_lr=cfg.train.projector_lr if cfg.stage == "stage2" else None,
        row_lengths=dataset.lengths,
        group_by_length=cfg.data.group_by_length and not cfg.data.packing,
        row_multimodal=dataset.multimodal,
        group_by_modality_length=cfg.data.group_by_modality_length,
        token_meter=meter,
        callbacks=[ProgressAndMetrics(out / METRICS_FILE, meter, show_bar=show_progress), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # the bar and metrics.jsonl replace raw dict printing
    check_launch(trainer.accelerator)
    result = trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)

    # 6. Final weights: projector and (stage 2) the LoRA adapter, each in its own file; stage 1 also
    #    the whole model (final/model/), which stage 2 and `ask` load as a checkpoint.
    final = save_final(trainer, cfg, loaded, out / FINAL_DIR)
    return TrainResult(out, final, trainer.state.global_step, float(result.training_loss), report, trainable)


def training_arguments(cfg: TrainConfig, device: str, precision: str) -> Any:
    """transformers `TrainingArguments` for the config's `train` section."""
    from transformers import TrainingArguments

    t = cfg.train
    return TrainingArguments(
        output_dir=t.output_dir,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.lr,
        weight_decay=t.weight_decay,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        max_grad_norm=t.max_grad_norm,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        tf32=True if t.tf32 and device == "cuda" else None,
        use_cpu=device == "cpu",
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=list(t.report_to) or "none",
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,  # the collator needs the encoded samples and their images
        disable_tqdm=True,  # ProgressAndMetrics draws the bar (loss, lr, tokens/s)
    )


def prepare_model(cfg: TrainConfig, device: str, precision: str) -> tuple[Any, Any]:
    """(the loaded model, the module to train): projector only (stage 1) or LoRA + projector (stage 2).

    Seeded before and after loading, so LoRA's random initial A matrices do not depend on how the
    model was loaded or composed.
    """
    from transformers import set_seed

    set_seed(cfg.train.seed)
    loaded = load_for_training(cfg, device, precision)
    set_seed(cfg.train.seed)
    if cfg.stage == "stage1":
        freeze_for_stage1(loaded.model)
        model = loaded.model
    else:
        quantized = cfg.lora.quantization == "4bit"
        model = attach_lora(loaded.model, cfg.lora, train_projector=loaded.has_vision, quantized=quantized)
    if precision != "fp32":
        cast_trainable_to_fp32(model)
    return loaded, model


def prepare_data(
    cfg: TrainConfig, loaded: Any, *, show_progress: bool
) -> tuple[RowDataset, TrainCollator, EncodeReport]:
    """Records read and checked, encoded with token-span masking, arranged in rows; the collator."""
    records = read_records(cfg.data.train, image_root=cfg.data.image_root, limit=cfg.data.limit)
    encoder = ConversationEncoder(
        loaded.tokenizer,
        EncoderSettings(
            template=loaded.template,
            image_token_id=loaded.image_token_id if loaded.has_vision else None,
            tokens_per_image=loaded.tokens_per_image,
            max_length=cfg.data.max_length,
            overlong=cfg.data.overlong,
            steer_language=cfg.data.steer_language,
        ),
    )
    samples, report = encode_records(records, encoder, stage=cfg.stage, progress=show_progress)
    dataset = RowDataset.build(samples, packing=cfg.data.packing, max_length=cfg.data.max_length)
    aspect = loaded.image_aspect_ratio if cfg.data.image_aspect_ratio == "model" else cfg.data.image_aspect_ratio
    collator = TrainCollator(
        pad_token_id=loaded.tokenizer.pad_token_id,
        image_processor=loaded.processor.image_processor if loaded.has_vision else None,
        image_aspect_ratio=aspect,
        packing=cfg.data.packing,
    )
    return dataset, collator, report


def save_final(trainer: BiMediXTrainer, cfg: TrainConfig, loaded: Any, final: Path) -> Path:
    """The trained weights under `final/` (every process calls it: sharded weights are gathered)."""
    trainer.save_model(str(final))  # BiMediXTrainer._save: projector.safetensors (+ the adapter in stage 2)
    if cfg.stage == "stage1" and cfg.train.save_full_model:
        trainer.save_full_model(final / MODEL_DIR, loaded.processor, loaded.template.jinja)
    if trainer.args.should_save:
        (final / "NOTICE.txt").write_text(RESEARCH_NOTICE + "\n", encoding="utf-8")
    return final


def check_launch(accelerator: Any) -> None:
    """Refuse a launch whose sharding accelerate silently dropped.

    accelerate applies an FSDP config only on GPU-class devices, and `enable_fsdp_on_cpu` adds
    multi-process CPU runs; anything else (e.g. one process) would run unsharded, which is not
    what the config asked for.
    """
    from accelerate.utils import DistributedType

    if fsdp_requested() and accelerator.distributed_type != DistributedType.FSDP:
        raise TrainingError(
            f"an FSDP launch runs as {accelerator.distributed_type.value} here, not sharded: FSDP needs GPUs or "
            "at least 2 CPU processes. Launch more processes, or use a DDP/DeepSpeed config."
        )


def _check_output_dir(out: Path, cfg: TrainConfig, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: fresh start); refuse to mix runs silently."""
    checkpoints = sorted(
        out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1
    )
    if not resume:
        if checkpoints:
            raise TrainingError(
                f"{out} already holds checkpoints ({checkpoints[-1].name}); pass --resume to continue that run "
                "or set train.output_dir to a new directory"
            )
        return None
    complete = [c for c in checkpoints if (c / TRAINER_STATE_FILE).is_file()]  # written last by the Trainer
    if not complete:
        raise TrainingError(f"--resume: no complete checkpoint-* directory in {out} to resume from")
    for torn in checkpoints[checkpoints.index(complete[-1]) + 1 :]:
        log.warning("--resume: %s is incomplete (interrupted while saving); resuming from %s", torn, complete[-1])
    saved = out / CONFIG_FILE
    if saved.is_file():
        import yaml

        before = yaml.safe_load(saved.read_text(encoding="utf-8"))
        now = config_to_dict(cfg)
        for section in ("stage", "model", "data", "lora", "train"):
            old, new = before.get(section), now.get(section)
            if section == "train" and isinstance(old, dict) and isinstance(new, dict):
                old = {k: v for k, v in old.items() if k not in _RESUMABLE_CHANGES}
                new = {k: v for k, v in new.items() if k not in _RESUMABLE_CHANGES}
            if old != new:
                raise TrainingError(
                    f"--resume: the {section!r} section differs from {saved}; resuming with other settings would "
                    "not continue the same run (start a new output_dir instead)"
                )
    return complete[-1]


def _write_data_report(out: Path, report: EncodeReport, rows: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "kept": report.kept,
        "dropped_too_long": report.dropped_too_long,
        "truncated": report.truncated,
        "rows": rows,
        "dropped_ids": list(report.dropped_ids[:1000]),
    }
    (out / "data_report.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
