"""Engine.stream_batch (several conversations in one generate call) and the dynamic batcher."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import torch

from bimedix2.engine import merge_prepared
from bimedix2.serve.batcher import Batcher, QueueFullError
from bimedix2.types import GenParams, ImageRef, Message

GREEDY = GenParams(temperature=0, max_new_tokens=12)
QUESTIONS = ["What is anemia?", "ما هو فقر الدم؟", "Describe the MRI of the brain.", "hi", "هل يوجد انصباب جنبي؟"]


def conversations(png: Path) -> list[list[Message]]:
    convs = [[Message("user", q)] for q in QUESTIONS]
    convs.append([Message("user", "What is seen?", (ImageRef(png),))])
    return convs


def drain(batch) -> list[str]:  # noqa: ANN001
    texts = [""] * len(batch.rows)

    def read(i: int) -> None:
        texts[i] = "".join(batch.rows[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(batch.rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return texts


def test_merge_left_pads_and_concatenates_images(tiny_engine, png_path: Path) -> None:  # noqa: ANN001
    rows = [tiny_engine.prepare([c], GREEDY) for c in conversations(png_path)]
    merged = merge_prepared(rows, pad_token_id=999)
    ids = merged.inputs["input_ids"]
    assert ids.shape == (len(rows), max(r.inputs["input_ids"].shape[1] for r in rows))
    for i, row in enumerate(rows):
        n = row.inputs["input_ids"].shape[1]
        assert torch.equal(ids[i, -n:], row.inputs["input_ids"][0])
        assert bool((ids[i, : ids.shape[1] - n] == 999).all())
        assert int(merged.inputs["attention_mask"][i].sum()) == row.prompt_tokens[0]
    assert merged.inputs["pixel_values"].shape[0] == 1


def test_batched_rows_match_single_generation(tiny_engine, png_path: Path) -> None:  # noqa: ANN001
    convs = conversations(png_path)
    solo = [tiny_engine.generate(c, GREEDY) for c in convs]
    batch = tiny_engine.stream_batch([tiny_engine.prepare([c], GREEDY) for c in convs], [GREEDY] * len(convs))
    texts = drain(batch)
    for expected, row, text in zip(solo, batch.rows, texts, strict=True):
        assert text == row.reply.text == expected.text
        assert row.reply == expected


def test_rows_keep_their_own_max_tokens_and_stop_strings(tiny_engine) -> None:  # noqa: ANN001
    first = tiny_engine.generate([Message("user", QUESTIONS[0])], GenParams(temperature=0, max_new_tokens=12))
    stop = first.text[4:7]
    assert stop and stop in first.text
    params = [
        GenParams(temperature=0, max_new_tokens=3),
        GenParams(temperature=0, max_new_tokens=12, stop=(stop,)),
        GenParams(temperature=0, max_new_tokens=12),
    ]
    convs = [[Message("user", QUESTIONS[1])], [Message("user", QUESTIONS[0])], [Message("user", QUESTIONS[2])]]
    batch = tiny_engine.stream_batch([tiny_engine.prepare([c], p) for c, p in zip(convs, params, strict=True)], params)
    texts = drain(batch)
    short, stopped, full = (row.reply for row in batch.rows)
    assert (short.completion_tokens, short.finish_reason) == (3, "length")
    assert stopped.finish_reason == "stop" and stopped.text == first.text[: first.text.index(stop)]
    assert full == tiny_engine.generate(convs[2], params[2])
    assert texts == [r.reply.text for r in batch.rows]


def test_cancelling_one_row_leaves_the_others(tiny_engine) -> None:  # noqa: ANN001
    params = GenParams(temperature=0, max_new_tokens=40)
    convs = [[Message("user", q)] for q in QUESTIONS[:3]]
    batch = tiny_engine.stream_batch([tiny_engine.prepare([c], params) for c in convs], [params] * 3)
    batch.rows[1].cancel()
    drain(batch)
    assert batch.rows[1].reply.completion_tokens < 40
    for i in (0, 2):
        assert batch.rows[i].reply == tiny_engine.generate(convs[i], params)


def test_rows_must_share_sampling_settings(tiny_engine) -> None:  # noqa: ANN001
    conv = [Message("user", "hi")]
    a, b = GenParams(temperature=0.7), GenParams(temperature=0.2)
    with pytest.raises(ValueError, match="share temperature"):
        tiny_engine.stream_batch([tiny_engine.prepare([conv], a), tiny_engine.prepare([conv], b)], [a, b])


def test_batcher_groups_concurrent_requests_and_bounds_its_queue(tiny_engine) -> None:  # noqa: ANN001
    async def scenario() -> None:
        batcher = Batcher(tiny_engine, max_batch_size=4, max_queue=4, batch_window_s=5.0)
        jobs = [batcher.submit([Message("user", q)], GREEDY) for q in QUESTIONS[:4]]
        with pytest.raises(QueueFullError):
            batcher.submit([Message("user", "one too many")], GREEDY)
        batcher.start()  # all four wait in the queue: one batch of four, no waiting for the window
        try:
            for job, q in zip(jobs, QUESTIONS[:4], strict=True):
                events = []
                while not events or events[-1][0] not in ("done", "error"):
                    events.append(await asyncio.wait_for(job.events.get(), 60))
                assert events[0][0] == "start"
                reply = events[-1][1]
                assert "".join(v for k, v in events if k == "text") == reply.text
                assert reply == tiny_engine.generate([Message("user", q)], GREEDY)
            assert batcher.stats.batches == 1 and batcher.stats.largest_batch == 4
        finally:
            batcher.stop()

    asyncio.run(scenario())


def test_batcher_reports_bad_requests_alone(tiny_engine, png_path: Path) -> None:  # noqa: ANN001
    from bimedix2.errors import ImageError

    async def scenario() -> None:
        batcher = Batcher(tiny_engine, max_batch_size=2, batch_window_s=5.0)
        bad = batcher.submit([Message("user", "x", (ImageRef(b"not an image", "upload"),))], GREEDY)
        good = batcher.submit([Message("user", "hi")], GREEDY)
        batcher.start()
        try:
            kind, error = await asyncio.wait_for(bad.events.get(), 60)
            assert kind == "error" and isinstance(error, ImageError) and "upload" in str(error)
            kinds = []
            while not kinds or kinds[-1] != "done":
                kinds.append((await asyncio.wait_for(good.events.get(), 60))[0])
            assert kinds[0] == "start"
        finally:
            batcher.stop()

    asyncio.run(scenario())
