"""Continuous batching on llama.cpp: rows admitted between decoding steps give what they give alone
(greedy), and a row that ends frees its sequence slot (KV cells removed) for the next admission."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from bimedix2.engine import Engine, Row
from bimedix2.engine.continuous import ContinuousBatch
from bimedix2.errors import ConfigError
from bimedix2.serve.batcher import Batcher
from bimedix2.types import GenParams, ImageRef, Message

from .conftest import PARALLEL
from .helpers import GREEDY, greedy_ids

CONVERSATIONS = [
    [Message("user", "What are the symptoms of iron deficiency anemia?")],
    [Message("user", "ما هي أعراض فقر الدم؟")],
    [Message("user", "Name three bones of the arm.")],
    [Message("user", "اذكر ثلاثة عظام في الذراع.")],
    [Message("user", "How is a fever treated?")],
]


def admit(run: ContinuousBatch, engine: Engine, conv: Sequence[Message], params: GenParams = GREEDY) -> Row:
    return run.admit(engine.prepare([conv], params), params)


def run_out(run: ContinuousBatch) -> None:
    while run.live:
        run.step()


def kv_is_empty(engine: Engine, slot: int) -> bool:
    lib, ctx = engine.backend.lib, engine.backend.ctx  # type: ignore[attr-defined]
    return lib.llama_memory_seq_pos_max(lib.llama_get_memory(ctx), slot) == -1


def test_rows_admitted_mid_flight_match_their_solo_runs(smol_lc_engine: Engine) -> None:
    engine = smol_lc_engine
    alone = [greedy_ids(engine, c) for c in CONVERSATIONS[:4]]
    replies = [engine.generate(c, GREEDY) for c in CONVERSATIONS[:4]]
    run = engine.continuous()
    rows = [admit(run, engine, CONVERSATIONS[0])]
    for _ in range(3):
        run.step()
    rows.append(admit(run, engine, CONVERSATIONS[1]))  # Arabic, joining after 3 steps
    for _ in range(5):
        run.step()
    rows += [admit(run, engine, CONVERSATIONS[2]), admit(run, engine, CONVERSATIONS[3])]
    assert run.live == 4
    run_out(run)
    assert [row.ids for row in rows] == alone
    assert [row.reply for row in rows] == replies
    assert run.steps < sum(len(ids) for ids in alone)  # rows really decoded together


def test_an_ended_rows_slot_is_freed_and_reused(smol_lc_engine: Engine) -> None:
    engine = smol_lc_engine
    backend = engine.backend
    fifth_alone = greedy_ids(engine, CONVERSATIONS[4])
    run = engine.continuous()
    rows = [admit(run, engine, c, GenParams(max_new_tokens=40, temperature=0.0)) for c in CONVERSATIONS[:PARALLEL]]
    with pytest.raises(ConfigError, match="busy"):
        admit(run, engine, CONVERSATIONS[4])
    slots = dict(backend._slots)  # type: ignore[attr-defined]
    assert len(slots) == PARALLEL and not any(kv_is_empty(engine, s) for s in slots)
    rows[1].cancel()  # the client has gone: the row ends before the next step and frees its slot
    run.step()
    assert rows[1].finished and rows[1].reply.completion_tokens == 1
    (freed,) = set(slots) - set(backend._slots)  # type: ignore[attr-defined]
    assert kv_is_empty(engine, freed)
    newcomer = admit(run, engine, CONVERSATIONS[4])  # reuses the slot; nothing of the old row is left in it
    assert freed in backend._slots  # type: ignore[attr-defined]
    run_out(run)
    assert newcomer.ids == fifth_alone
    assert not backend._slots and all(kv_is_empty(engine, s) for s in range(PARALLEL))  # type: ignore[attr-defined]


def test_an_image_row_joins_a_running_text_row(lc_engine: Engine, image_files: list[Path]) -> None:
    engine = lc_engine
    text = [Message("user", "ما هو فقر الدم؟")]
    image = [Message("user", "What is seen?", (ImageRef(image_files[0]),))]
    alone = [greedy_ids(engine, c) for c in (text, image)]
    run = engine.continuous()
    first = admit(run, engine, text)
    run.step()
    run.step()
    second = admit(run, engine, image)
    run_out(run)
    assert [first.ids, second.ids] == alone


def test_the_server_scheduler_admits_staggered_requests(smol_lc_engine: Engine) -> None:
    """Through the Batcher (the server's scheduler): requests sent while others decode get their solo answers."""
    engine = smol_lc_engine
    replies = [engine.generate(c, GREEDY) for c in CONVERSATIONS[:3]]

    async def scenario() -> None:
        batcher = Batcher(engine, max_batch_size=PARALLEL).start()
        assert batcher.scheduler == "continuous"
        try:
            jobs = []
            for conv in CONVERSATIONS[:3]:
                jobs.append(batcher.submit(conv, GREEDY))
                while (await asyncio.wait_for(jobs[-1].events.get(), 60))[0] != "text":
                    pass  # the next request arrives while this one decodes
            for job, expected in zip(jobs, replies, strict=True):
                while True:
                    kind, value = await asyncio.wait_for(job.events.get(), 120)
                    if kind in ("done", "error"):
                        break
                assert (kind, value) == ("done", expected)
            assert batcher.stats.largest_batch >= 2 and batcher.stats.completed == 3
        finally:
            batcher.stop()

    asyncio.run(scenario())
