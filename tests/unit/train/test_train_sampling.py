"""LLaVA's modality-length grouping: which rows share a mega-batch (= one optimizer step)."""

from __future__ import annotations

import random

import pytest
import torch

from bimedix2.train.sampling import (
    ModalityLengthGroupedSampler,
    balanced_chunks,
    length_grouped_order,
    modality_length_grouped_order,
)


def rows(images: int, texts: int, seed: int = 0) -> tuple[list[int], list[bool]]:
    rng = random.Random(seed)
    lengths = [rng.randint(20, 600) for _ in range(images + texts)]
    flags = [True] * images + [False] * texts
    order = list(range(images + texts))
    rng.shuffle(order)  # modalities interleaved in the dataset, as in a real mix
    return [lengths[i] for i in order], [flags[i] for i in order]


def megabatches(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


@pytest.mark.parametrize(("images", "texts"), [(40, 24), (37, 21), (8, 0), (0, 8), (3, 2)])
def test_every_step_but_the_mixed_leftovers_has_one_modality(images: int, texts: int) -> None:
    lengths, multimodal = rows(images, texts)
    batch, world = 2, 4  # e.g. 2 processes x gradient accumulation 2 (LLaVA passes world x accumulation)
    order = modality_length_grouped_order(lengths, multimodal, batch, world, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(len(lengths)))  # a permutation: every row once
    groups = megabatches(order, batch * world)
    mixed = [g for g in groups if len({multimodal[i] for i in g}) > 1]
    # only the joined leftovers of the two modalities may mix: at most the first and the last group
    assert len(mixed) <= 2 and all(g in (groups[0], groups[-1]) for g in mixed)
    pure = [g for g in groups if g not in mixed]
    full_pure = images // (batch * world) + texts // (batch * world)
    assert len(pure) >= full_pure - 2  # each modality's last mega-batch joins the leftovers


def test_rows_of_a_megabatch_are_sorted_longest_first_and_dealt_into_balanced_batches() -> None:
    lengths, multimodal = rows(32, 0)
    batch, world = 4, 2
    order = modality_length_grouped_order(lengths, multimodal, batch, world, torch.Generator().manual_seed(3))
    for group in megabatches(order, batch * world):
        batches = megabatches(group, batch)
        assert len(batches) == world
        totals = [sum(lengths[i] for i in b) for b in batches]
        assert max(totals) - min(totals) <= max(lengths[i] for i in group)  # greedy balance bound
        for b in batches:
            assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_the_same_global_batch_gives_the_same_steps_on_one_or_many_processes() -> None:
    """2 processes x batch 2 and 1 process x batch 4 see the same rows in every optimizer step."""
    lengths, multimodal = rows(16, 8)
    one = modality_length_grouped_order(lengths, multimodal, 4, 1, torch.Generator().manual_seed(5))
    two = modality_length_grouped_order(lengths, multimodal, 2, 2, torch.Generator().manual_seed(5))
    assert [sorted(g) for g in megabatches(one, 4)] == [sorted(g) for g in megabatches(two, 4)]


def test_sampler_order_depends_on_seed_and_epoch_only() -> None:
    lengths, multimodal = rows(20, 12)
    sampler = ModalityLengthGroupedSampler(lengths, multimodal, batch_size=2, world_size=2, seed=9)
    first = list(sampler)
    torch.manual_seed(12345)  # the global RNG plays no part
    assert list(sampler) == first and len(sampler) == len(lengths)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == sorted(first)
    again = ModalityLengthGroupedSampler(lengths, multimodal, batch_size=2, world_size=2, seed=9)
    again.set_epoch(1)
    assert list(again) == list(sampler)


def test_balanced_chunks_and_plain_length_grouping() -> None:
    assert balanced_chunks([0, 1, 2, 3], [8, 5, 4, 1], 2) == [[0, 3], [1, 2]]
    assert balanced_chunks([0, 1, 2], [3, 2, 1], 2) == [[0, 2], [1]]  # uneven: strided, as LLaVA
    order = length_grouped_order([5, 1, 4, 2, 3, 6], 3, 1, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(6))
    with pytest.raises(ValueError, match="modality flags"):
        modality_length_grouped_order([1, 2], [True], 1, 1, torch.Generator())


def test_trainer_builds_it_with_processes_times_accumulation(tiny_llava_path, tmp_path) -> None:  # noqa: ANN001
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from train_helpers import tiny_config
    from transformers import TrainerCallback

    from bimedix2.train.recipes import run_stage2

    seen = {}

    class Grab(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):  # noqa: ANN001, ANN201
            batches = train_dataloader.batch_sampler
            seen["sampler"] = getattr(batches, "sampler", None) or batches.batch_sampler.sampler

    cfg = tiny_config("stage2-tiny.yaml", tiny_llava_path, tmp_path / "r", "train.max_steps=1")
    run_stage2(cfg, callbacks=[Grab()], show_progress=False)
    sampler = seen["sampler"]
    assert isinstance(sampler, ModalityLengthGroupedSampler)
    assert (sampler.batch_size, sampler.world_size) == (2, 2)  # stage2-tiny: batch 2, accumulation 2, one process
    assert sum(sampler.multimodal) == 4 and len(sampler.multimodal) == 6  # chat.jsonl: 4 with images, 2 text-only
