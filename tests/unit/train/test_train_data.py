"""Packing, length grouping and the collator; packed samples must not attend to each other."""

from __future__ import annotations

from pathlib import Path

import torch

from bimedix2.train.data import NUM_TOKENS_KEY, RowDataset, TrainCollator, pack_samples, padding_waste
from bimedix2.train.encode import IGNORE_INDEX, ConversationEncoder, EncodedSample, EncoderSettings
from bimedix2.train.records import read_records

CHAT = Path(__file__).parent / "fixtures" / "chat.jsonl"


def fake(rid: str, n: int) -> EncodedSample:
    return EncodedSample(rid, tuple(range(1, n + 1)), (IGNORE_INDEX,) + tuple(range(2, n + 1)), ())


def encoded(loaded) -> dict[str, EncodedSample]:
    enc = ConversationEncoder(
        loaded.tokenizer, EncoderSettings(loaded.template, loaded.image_token_id, loaded.tokens_per_image, 2048)
    )
    return {r.id: enc.encode_chat(r) for r in read_records([CHAT])}


def test_pack_samples_fills_rows_and_keeps_every_sample_once() -> None:
    lengths = [700, 90, 1500, 30, 400, 1000, 60, 250, 2048, 5, 600, 120]
    samples = [fake(f"s{i}", n) for i, n in enumerate(lengths)]
    rows = pack_samples(samples, 2048)
    assert sorted(s.id for row in rows for s in row) == sorted(s.id for s in samples)
    assert all(sum(len(s) for s in row) <= 2048 for row in rows)
    assert len(rows) == -(-sum(lengths) // 2048)  # optimal here: no row more than needed
    assert rows == pack_samples(samples, 2048)  # deterministic
    waste = padding_waste([[len(s) for s in row] for row in rows], batch_size=1)
    assert waste < 0.25


def test_padding_waste_counts_padded_positions() -> None:
    assert padding_waste([[10], [10]], batch_size=2) == 0.0
    assert padding_waste([[10], [30]], batch_size=2) == 1 - 40 / 60
    assert padding_waste([[10], [30]], batch_size=1) == 0.0
    assert padding_waste([[10], [30], [10], [30]], batch_size=2, order=[0, 2, 1, 3]) == 0.0


def test_collator_pads_right_and_masks_padding(tiny_llava) -> None:
    samples = encoded(tiny_llava)
    rows = RowDataset.build([samples["en-mcq-text-only"], samples["en-vqa-1"]], packing=False, max_length=2048)
    collate = TrainCollator(tiny_llava.tokenizer.pad_token_id, tiny_llava.processor.image_processor)
    batch = collate([rows[0], rows[1]])
    short, long = len(samples["en-mcq-text-only"]), len(samples["en-vqa-1"])
    assert batch["input_ids"].shape == (2, long)
    assert batch["attention_mask"][0].sum() == short and batch["attention_mask"][1].sum() == long
    assert (batch["labels"][0, short:] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape[0] == 1 and int(batch[NUM_TOKENS_KEY]) == short + long
    assert "position_ids" not in batch


def test_packed_samples_do_not_attend_to_each_other(tiny_llava) -> None:
    model = tiny_llava.model.eval()
    samples = encoded(tiny_llava)
    pair = [samples["en-vqa-1"], samples["ar-multi-turn"]]
    plain = TrainCollator(tiny_llava.tokenizer.pad_token_id, tiny_llava.processor.image_processor)
    packed = TrainCollator(
        tiny_llava.tokenizer.pad_token_id, tiny_llava.processor.image_processor, packing=True, pad_to_multiple_of=64
    )
    batch = packed([{"samples": tuple(pair)}])
    assert "attention_mask" not in batch
    first = len(pair[0])
    assert batch["position_ids"][0, first] == 0 and batch["position_ids"][0, first - 1] == first - 1
    with torch.no_grad():
        batch.pop(NUM_TOKENS_KEY)
        # use_cache=False as in training: with a cache transformers does not build the packed mask
        together = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        for offset, sample in ((0, pair[0]), (first, pair[1])):
            alone_batch = plain([{"samples": (sample,)}])
            alone_batch.pop(NUM_TOKENS_KEY)
            alone = model(**{k: v for k, v in alone_batch.items() if k != "labels"}).logits[0]
            torch.testing.assert_close(together[offset : offset + len(sample)], alone, atol=1e-5, rtol=1e-4)
    # and the loss of the packed row is the token-weighted loss of the two samples
    with torch.no_grad():
        packed_loss = model(**batch, use_cache=False).loss
        losses = []
        for sample in pair:
            single = plain([{"samples": (sample,)}])
            single.pop(NUM_TOKENS_KEY)
            losses.append((model(**single).loss, sample.n_loss_tokens))
    expected = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
    torch.testing.assert_close(packed_loss, expected, atol=1e-5, rtol=1e-4)
