"""Training-order samplers: LLaVA's modality-length grouping, drawn from (seed, epoch) alone.

`--group_by_modality_length True` in the released stage-2 script selects LLaVA's
`LengthGroupedSampler(group_by_modality=True)` (`llava/train/llava_trainer.py`). Written
here from its description, not copied:

1. split the rows into image rows and text-only rows;
2. within each modality, draw a random permutation, cut it into mega-batches of
   `world_size x batch_size` rows (LLaVA passes world_size = processes x gradient
   accumulation, so one mega-batch is one optimizer step), sort each mega-batch by length
   (longest first) and deal it into `world_size` batches of similar total length;
3. the mega-batches of both modalities are shuffled together, except each modality's last
   one (complete or not): those two are joined into one mixed group whose first
   mega-batch's worth goes first when it fills one, and the rest last.

So every optimizer step except at most two sees one modality only, and within it rows of
similar length. Lengths here are real token counts (LLaVA estimates them from word counts).

The order is a function of (seed, epoch) alone -- not of the global RNG, which differs between
an uninterrupted and a resumed run -- and is the same on every process, as the data-loader
sharding (process k takes batches k, k + P, ...) requires.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def balanced_chunks(indices: Sequence[int], lengths: Sequence[int], chunks: int) -> list[list[int]]:
    """Deal `indices` (longest first) into `chunks` equal-sized lists of similar total length."""
    if len(indices) % chunks:
        return [list(indices[i::chunks]) for i in range(chunks)]
    size = len(indices) // chunks
    out: list[list[int]] = [[] for _ in range(chunks)]
    totals = [0.0] * chunks
    for index in indices:
        target = totals.index(min(totals))
        out[target].append(index)
        totals[target] += lengths[index]
        if len(out[target]) == size:
            totals[target] = float("inf")  # full: take no more
    return out


def length_grouped_order(
    lengths: Sequence[int], batch_size: int, world_size: int, generator: torch.Generator
) -> list[int]:
    """Positions 0..n-1 in random mega-batches, each sorted longest first and dealt into balanced batches."""
    megabatch = world_size * batch_size
    order = torch.randperm(len(lengths), generator=generator).tolist()
    out: list[int] = []
    for start in range(0, len(order), megabatch):
        chunk = sorted(order[start : start + megabatch], key=lambda i: lengths[i], reverse=True)
        for batch in balanced_chunks(chunk, lengths, world_size):
            out.extend(batch)
    return out


def modality_length_grouped_order(
    lengths: Sequence[int],
    multimodal: Sequence[bool],
    batch_size: int,
    world_size: int,
    generator: torch.Generator,
) -> list[int]:
    """Row indices in LLaVA's modality-length-grouped order (see the module docstring)."""
    if len(lengths) != len(multimodal):
        raise ValueError(f"{len(lengths)} lengths for {len(multimodal)} modality flags")
    megabatch = world_size * batch_size
    full: list[list[int]] = []
    leftover: list[int] = []
    for want in (True, False):  # image rows first, then text-only rows, as LLaVA does
        rows = [i for i, flag in enumerate(multimodal) if flag == want]
        if not rows:
            continue
        ordered = [rows[i] for i in length_grouped_order([lengths[r] for r in rows], batch_size, world_size, generator)]
        groups = [ordered[i : i + megabatch] for i in range(0, len(ordered), megabatch)]
        full.extend(groups[:-1])
        leftover.extend(groups[-1])  # the last mega-batch of a modality, full or not, joins the mixed one
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if len(leftover) >= megabatch:
        shuffled.insert(0, leftover[:megabatch])
        leftover = leftover[megabatch:]
    if leftover:
        shuffled.append(leftover)
    return [i for group in shuffled for i in group]


class ModalityLengthGroupedSampler(Sampler[int]):
    """LLaVA's `group_by_modality_length` order, reseeded per epoch (accelerate calls `set_epoch`)."""

    def __init__(
        self, lengths: Sequence[int], multimodal: Sequence[bool], *, batch_size: int, world_size: int, seed: int
    ):
        if batch_size < 1 or world_size < 1:
            raise ValueError("batch_size and world_size must be at least 1")
        self.lengths = list(lengths)
        self.multimodal = list(multimodal)
        self.batch_size = batch_size
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = modality_length_grouped_order(
            self.lengths, self.multimodal, self.batch_size, self.world_size, generator
        )
        return iter(order)
