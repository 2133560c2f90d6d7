"""Encoded samples to batches: the dataset, sequence packing and the collator.

Two ways to keep padding low (configurable, measured in benchmarks/bench_packing.py):

- length grouping: batches of similar-length samples (transformers' `LengthGroupedSampler`);
- packing: several samples per row (best-fit decreasing into rows of `max_length`), with
  `position_ids` restarting at 0 for each sample and no 2-D attention mask, so transformers
  builds a block-diagonal causal mask and packed samples never attend to each other (and
  flash-attention kernels run varlen). Each sample's first label is -100 (BOS / system
  prompt), so no token learns to predict the next sample.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from ..images import DEFAULT_LIMITS, ImageLimits, load_image, pad_to_square
from .encode import IGNORE_INDEX, EncodedSample

NUM_TOKENS_KEY = "num_real_tokens"  # popped by the trainer before the forward pass (tokens/s)


def pack_samples(samples: Sequence[EncodedSample], max_length: int) -> list[tuple[EncodedSample, ...]]:
    """Best-fit-decreasing packing of samples into rows of at most `max_length` tokens.

    Deterministic (ties keep input order); the training sampler shuffles the rows.
    """
    order = sorted(range(len(samples)), key=lambda i: -len(samples[i]))
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, row index), sorted
    for i in order:
        need = len(samples[i])
        if need > max_length:
            raise ValueError(f"sample {samples[i].id} has {need} tokens, more than the row length {max_length}")
        at = bisect.bisect_left(free, (need, -1))
        if at < len(free):
            remaining, row = free.pop(at)
            rows[row].append(i)
            remaining -= need
        else:
            rows.append([i])
            row, remaining = len(rows) - 1, max_length - need
        if remaining > 0:
            bisect.insort(free, (remaining, row))
    return [tuple(samples[i] for i in sorted(row)) for row in rows]


class RowDataset(Dataset):
    """Rows of one or more encoded samples; `lengths` (and `multimodal`) feed the grouped samplers."""

    def __init__(self, rows: Sequence[tuple[EncodedSample, ...]]):
        if not rows:
            raise ValueError("no training rows")
        self.rows = list(rows)
        self.lengths = [sum(len(s) for s in row) for row in self.rows]
        self.multimodal = [any(s.images for s in row) for row in self.rows]  # feeds modality grouping

    @classmethod
    def build(cls, samples: Sequence[EncodedSample], *, packing: bool, max_length: int) -> RowDataset:
        """One sample per row, or packed rows."""
        rows = pack_samples(samples, max_length) if packing else [(s,) for s in samples]
        return cls(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"samples": self.rows[index]}


@dataclass
class TrainCollator:
    """Pads rows to the batch's longest, loads and preprocesses images, builds labels.

    Packed rows (more than one sample) get `position_ids` and no `attention_mask`; unpacked
    batches get a right-padded `attention_mask`.
    """

    pad_token_id: int
    image_processor: Any | None = None
    image_aspect_ratio: str = "pad"
    limits: ImageLimits = DEFAULT_LIMITS
    packing: bool = False
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows: list[tuple[EncodedSample, ...]] = [tuple(f["samples"]) for f in features]
        width = max(sum(len(s) for s in row) for row in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for sample in row:
                n = len(sample)
                ids[r, at : at + n] = torch.tensor(sample.input_ids)
                labels[r, at : at + n] = torch.tensor(sample.labels)
                positions[r, at : at + n] = torch.arange(n)
                mask[r, at : at + n] = 1
                at += n
            positions[r, at:] = torch.arange(width - at)  # padding is its own "sequence"
        batch: dict[str, torch.Tensor] = {"input_ids": ids, "labels": labels, NUM_TOKENS_KEY: mask.sum()}
        if self.packing:
            batch["position_ids"] = positions
        else:
            batch["attention_mask"] = mask
        images = [ref for row in rows for sample in row for ref in sample.images]
        if images:
            if self.image_processor is None:
                raise ValueError("batch has images but the collator has no image processor (text-only model)")
            pil = [load_image(ref, self.limits) for ref in images]
            if self.image_aspect_ratio == "pad":
                pil = [pad_to_square(img) for img in pil]
            batch["pixel_values"] = self.image_processor(pil, return_tensors="pt")["pixel_values"]
        return batch


def padding_waste(rows: Sequence[Sequence[int]], batch_size: int, order: Sequence[int] | None = None) -> float:
    """Share of padded positions when rows (lists of sample lengths) are batched in `order`."""
    order = list(order) if order is not None else list(range(len(rows)))
    real = padded = 0
    for start in range(0, len(order), batch_size):
        chunk = [sum(rows[i]) for i in order[start : start + batch_size]]
        real += sum(chunk)
        padded += max(chunk) * len(chunk)
    return 1.0 - real / padded if padded else 0.0
