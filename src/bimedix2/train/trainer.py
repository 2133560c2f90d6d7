"""The transformers `Trainer`, adjusted for LLaVA training, plus progress and metrics callbacks.

Changes to the stock Trainer, each small:
- the projector gets its own learning rate (a separate optimizer parameter group);
- length-grouped sampling uses the lengths computed at tokenization (no pass over the data),
  and LLaVA's modality-length grouping (`sampling.py`) is one config flag away;
- checkpoints hold only what is trained: the projector (`projector.safetensors`) and, in
  stage 2, the LoRA adapter; resuming loads them back (optimizer, scheduler, RNG and data
  position are restored by the Trainer itself);
- real (non-padding) tokens are counted for tokens/s, also for packed rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..fileio import atomic_directory, atomic_write_text, scan_jsonl
from .cpu_fsdp import shard_on_cpu
from .data import NUM_TOKENS_KEY
from .modeling import PROJECTOR_FILE, PROJECTOR_NAME, load_projector, save_projector
from .sampling import ModalityLengthGroupedSampler

log = logging.getLogger(__name__)


class TokenMeter:
    """Real tokens processed, shared by the trainer (counts) and callbacks (rates).

    `local` counts this process's tokens; `total` is the sum over all processes as of the last
    log step (the trainer sums it there, a collective every process reaches at the same step).
    """

    def __init__(self) -> None:
        self.local = 0
        self.total = 0


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch) alone, so a resumed run sees the same order.

    transformers' sampler draws from the global RNG, whose state at an epoch start differs
    between an uninterrupted and a resumed run; accelerate calls `set_epoch` on samplers.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # noqa: ANN204
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class BiMediXTrainer(Trainer):
    """`Trainer` with a projector learning rate, length grouping from known lengths, trained-only checkpoints."""

    def __init__(
        self,
        *args: Any,
        projector_lr: float | None = None,
        row_lengths: list[int] | None = None,
        group_by_length: bool = False,
        row_multimodal: list[bool] | None = None,
        group_by_modality_length: bool = False,
        token_meter: TokenMeter | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.projector_lr = projector_lr
        self.row_lengths = row_lengths
        self.group_rows_by_length = group_by_length
        self.row_multimodal = row_multimodal
        self.group_rows_by_modality = group_by_modality_length
        self.token_meter = token_meter or TokenMeter()

    # --------------------------------------------------------------------------- optimizer
    def create_accelerator_and_postprocess(self) -> None:
        """transformers' accelerator, made to shard with FSDP2 on a multi-process CPU FSDP launch."""
        super().create_accelerator_and_postprocess()
        if shard_on_cpu(self.accelerator):
            self.is_fsdp_enabled = True
            log.info("FSDP2 on %d CPU processes (gloo)", self.accelerator.num_processes)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW (args.optim) with four groups: {projector, rest} x {decay, no decay}."""
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                is_projector = PROJECTOR_NAME in name and self.projector_lr is not None
                groups.setdefault((is_projector, name in decay), []).append(param)
        param_groups = []
        for (is_projector, decays), params in sorted(groups.items()):
            group: dict[str, Any] = {"params": params, "weight_decay": self.args.weight_decay if decays else 0.0}
            if is_projector:
                group["lr"] = self.projector_lr
            param_groups.append(group)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    # ----------------------------------------------------------------------------- sampling
    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        if self.group_rows_by_modality and self.row_lengths is not None and self.row_multimodal is not None:
            # as LLaVA: one mega-batch = one optimizer step over all processes
            return ModalityLengthGroupedSampler(
                self.row_lengths,
                self.row_multimodal,
                batch_size=self.args.per_device_train_batch_size,
                world_size=self.args.world_size * self.args.gradient_accumulation_steps,
                seed=seed,
            )
        if self.group_rows_by_length and self.row_lengths is not None:
            return EpochSeededLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, self.row_lengths, seed
            )
        return super()._get_train_sampler(train_dataset)

    # ------------------------------------------------------------------------------- tokens
    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any) -> Any:
        real = inputs.pop(NUM_TOKENS_KEY, None)
        if "position_ids" in inputs and "attention_mask" not in inputs:
            inputs["use_cache"] = False  # with a cache, transformers skips the packed (block-diagonal) mask
        if real is not None and model.training:
            self.token_meter.local += int(real)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Sum the real-token count over processes before the callbacks see this log step."""
        if "loss" in logs:
            local = torch.tensor([self.token_meter.local], device=self.args.device, dtype=torch.long)
            self.token_meter.total = int(self.accelerator.reduce(local, reduction="sum").item())
        super().log(logs, start_time)

    # -------------------------------------------------------------------------- checkpoints
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Stage 2 (PEFT): the adapter (stock behaviour) + projector; stage 1: the projector only."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        unwrapped = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        is_peft = hasattr(unwrapped, "peft_config")
        if is_peft:
            super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            save_projector(unwrapped, Path(output_dir), state_dict)
            if not is_peft:
                torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def save_full_model(self, directory: Path, processor: Any, chat_template: str) -> Path | None:
        """Write the whole (non-PEFT) model as a transformers checkpoint with its processor.

        Every process calls it: under ZeRO-3 / FSDP the state dict is gathered from the shards.
        The main process writes (atomically); the others return None.
        """
        state = self.accelerator.get_state_dict(self.model_wrapped if self.is_deepspeed_enabled else self.model)
        if not self.args.should_save:
            return None
        unwrapped = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if hasattr(unwrapped, "peft_config"):
            raise ValueError("save_full_model writes plain models; merge a LoRA run with `bimedix2 merge`")
        if directory.exists():
            shutil.rmtree(directory)  # a previous attempt of this run's final save
        with atomic_directory(directory) as tmp:
            unwrapped.config.use_cache = True
            try:
                unwrapped.save_pretrained(tmp, state_dict=state)
            finally:
                unwrapped.config.use_cache = False
            processor.chat_template = chat_template
            processor.tokenizer.chat_template = chat_template
            processor.save_pretrained(tmp)
        return directory

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        model = self.model if model is None else model
        unwrapped = self.accelerator.unwrap_model(model, keep_torch_compile=False)
        if hasattr(unwrapped, "peft_config") or self.is_fsdp_enabled:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        projector = Path(resume_from_checkpoint) / PROJECTOR_FILE
        # Under FSDP the checkpoint's model file (loaded by the stock path, into the shards) holds
        # every parameter, the projector included; copying plain tensors into sharded ones fails.
        if projector.is_file() and not self.is_fsdp_enabled:
            load_projector(unwrapped, projector)
        elif not hasattr(unwrapped, "peft_config"):
            super()._load_from_checkpoint(resume_from_checkpoint, model)


class ProgressAndMetrics(TrainerCallback):
    """A tqdm bar with loss, lr and tokens/s, and one JSON line per log event in metrics.jsonl."""

    def __init__(self, metrics_path: Path, meter: TokenMeter, *, show_bar: bool = True):
        self.metrics_path = metrics_path
        self.meter = meter
        self.show_bar = show_bar
        self.bar: tqdm | None = None
        self._last_time = 0.0
        self._last_tokens = 0
        self._postfix: dict[str, str] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._drop_lines_after(state.global_step)  # a resumed run continues the curve, it does not repeat it
        self.bar = tqdm(
            total=state.max_steps,
            initial=state.global_step,
            desc="training",
            unit="step",
            disable=not self.show_bar,
            dynamic_ncols=True,
        )
        self._last_time = time.perf_counter()
        self._last_tokens = self.meter.total

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        elapsed = now - self._last_time
        tokens = self.meter.total - self._last_tokens
        rate = tokens / elapsed if elapsed > 0 else 0.0
        record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch, "time": time.time()}
        record.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        if "loss" in logs:
            record["tokens"] = tokens
            record["tokens_per_s"] = rate
            self._last_time, self._last_tokens = now, self.meter.total
            self._postfix = {
                "loss": f"{logs['loss']:.4f}",
                "lr": f"{logs.get('learning_rate', 0.0):.2e}",
                "tok/s": f"{rate:,.0f}",
            }
            if self.bar is not None:
                self.bar.set_postfix(self._postfix, refresh=True)
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _drop_lines_after(self, step: int) -> None:
        if not self.metrics_path.is_file():
            return
        kept = [
            json.dumps(line.obj) + "\n"
            for line in scan_jsonl(self.metrics_path)
            if line.obj is not None and line.obj.get("step", 0) <= step  # a line torn by a crash is dropped
        ]
        atomic_write_text(self.metrics_path, "".join(kept))
