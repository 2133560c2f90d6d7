"""The continuous scheduler: a request arriving mid-batch starts at the next decoding step (counted in
steps of a scripted backend, not in seconds), finished and cancelled rows free their slots."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from bimedix2.engine import Engine, PreparedBatch, Sampling, StepFn, merge_prepared, register_backend
from bimedix2.engine.backend import ContinuousBackend, template_stop_ids
from bimedix2.errors import ConfigError
from bimedix2.model.base import LoadedModel
from bimedix2.serve.batcher import Batcher, Job
from bimedix2.types import GenParams, Message, Reply

ANSWER = "Rest and fluids. الراحة والسوائل. "
LONG = GenParams(temperature=0, max_new_tokens=400)
SHORT = GenParams(temperature=0, max_new_tokens=6)


@register_backend("scripted-continuous")
class ContinuousScriptedBackend:
    """Answers every conversation with ANSWER, repeated, one tokenizer token per step; `events` logs
    each admission ("admit", slot, steps run so far) and each decoding step ("step", slots)."""

    slots = 2

    def __init__(self, loaded: LoadedModel) -> None:
        self.tokenizer = loaded.tokenizer
        self.stop_token_ids = template_stop_ids(loaded.tokenizer, loaded.template)
        self.context_length = 4096
        self.script = self.tokenizer.encode(ANSWER, add_special_tokens=False)
        self.positions: dict[int, int] = {}
        self.events: list[tuple[Any, ...]] = []
        self.steps_run = 0
        self.pace_s = 0.002  # a decoding step takes a little time, as a real one does
        self.lock = threading.Lock()
        self.fail_at: int | None = None  # the step count at which `step` raises, once

    def encode(self, prompts: Sequence[str], images: Sequence[Any]) -> dict[str, Any]:
        rows = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        width = max(len(r) for r in rows)
        ids = [[0] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def merge(self, rows: Sequence[PreparedBatch]) -> PreparedBatch:
        return merge_prepared(rows, pad_token_id=0)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _take_slot(self) -> int:
        free = next((s for s in range(self.slots) if s not in self.positions), None)
        if free is None:
            raise ConfigError("all slots are busy")
        self.positions[free] = 0
        self.events.append(("admit", free, self.steps_run))
        return free

    def admit(self, inputs: dict[str, Any], sampling: Sampling) -> tuple[int, int]:
        assert inputs["input_ids"].shape[0] == 1
        slot = self._take_slot()
        return slot, self.script[0]

    def step(self, slots: Sequence[int]) -> list[int]:
        time.sleep(self.pace_s)
        if self.fail_at is not None and self.steps_run == self.fail_at:
            self.fail_at = None  # once
            raise RuntimeError("the runtime failed mid-step")
        with self.lock:  # a request submitted under this lock arrives between two counted steps
            self.steps_run += 1
        self.events.append(("step", tuple(slots)))
        out = []
        for slot in slots:
            self.positions[slot] += 1
            out.append(self.script[self.positions[slot] % len(self.script)])
        return out

    def release(self, slot: int) -> None:
        if self.positions.pop(slot, None) is not None:
            self.events.append(("release", slot))

    def generate(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling, step: StepFn) -> None:
        """The whole-batch run of the batch scheduler, on the same slots and step counter."""
        slots = [self._take_slot() for _ in range(inputs["input_ids"].shape[0])]
        try:
            done = step([self.script[0]] * len(slots))
            for _ in range(max_new_tokens - 1):
                live = [s for s, ended in zip(slots, done, strict=True) if not ended]
                if not live:
                    return
                tokens = dict(zip(live, self.step(live), strict=True))
                done = step([tokens.get(s, self.script[0]) for s in slots])
        finally:
            for slot in slots:
                self.release(slot)


@pytest.fixture()
def engine(tiny_llava: LoadedModel) -> Engine:
    return Engine(tiny_llava, backend="scripted-continuous")


async def finish(job: Job) -> tuple[list[tuple[str, Any]], Reply]:
    events: list[tuple[str, Any]] = []
    while not events or events[-1][0] not in ("done", "error"):
        events.append(await asyncio.wait_for(job.events.get(), 60))
    assert events[-1][0] == "done", events[-1]
    return events, events[-1][1]


async def first_text(job: Job) -> None:
    while (await asyncio.wait_for(job.events.get(), 60))[0] != "text":
        pass


def admitted_after(backend: ContinuousScriptedBackend, nth: int) -> int:
    """Decoding steps run before the `nth` admission (0-based)."""
    return [e[2] for e in backend.events if e[0] == "admit"][nth]


def wait_for_arrival_gap(engine: Engine, scheduler: str) -> int:
    """Steps between a second request's arrival (while the first decodes) and its first token."""
    backend = engine.backend
    assert isinstance(backend, ContinuousScriptedBackend)

    async def scenario() -> int:
        batcher = Batcher(engine, max_batch_size=2, batch_window_s=0, scheduler=scheduler).start()
        try:
            first = batcher.submit([Message("user", "What helps a cold?")], LONG)
            await first_text(first)
            while backend.steps_run < 3:  # the first request is decoding
                await asyncio.sleep(0.001)
            with backend.lock:
                arrived_at = backend.steps_run
                second = batcher.submit([Message("user", "ما الذي يساعد في نزلات البرد؟")], SHORT)
            _, reply = await finish(second)
            assert reply.text == (ANSWER * 2)[: len(reply.text)] and reply.completion_tokens == SHORT.max_new_tokens
            await finish(first)
            return admitted_after(backend, 1) - arrived_at
        finally:
            batcher.stop()

    return asyncio.run(scenario())


def test_a_request_arriving_mid_batch_starts_at_the_next_step(engine: Engine) -> None:
    assert isinstance(engine.backend, ContinuousBackend)
    assert Batcher(engine).scheduler == "continuous"
    assert wait_for_arrival_gap(engine, "continuous") <= 1


def test_the_batch_scheduler_makes_it_wait_for_the_batch(engine: Engine) -> None:
    """The old behaviour, still selectable: the newcomer waits for the running request's 400 tokens."""
    assert wait_for_arrival_gap(engine, "batch") > LONG.max_new_tokens // 2


def test_finished_and_cancelled_rows_free_their_slots(engine: Engine) -> None:
    backend = engine.backend
    assert isinstance(backend, ContinuousScriptedBackend)

    async def scenario() -> None:
        batcher = Batcher(engine, max_batch_size=2, scheduler="continuous").start()
        try:
            long_a = batcher.submit([Message("user", "a")], LONG)
            long_b = batcher.submit([Message("user", "b")], LONG)
            await first_text(long_a)
            await first_text(long_b)
            queued = batcher.submit([Message("user", "c")], SHORT)  # both slots busy: it waits
            await asyncio.sleep(0.05)
            assert batcher.queued == 1 and batcher.running == 2
            batcher.cancel(long_a)  # its slot goes to the queued request at the next step
            _, cancelled = await finish(long_a)
            assert cancelled.completion_tokens < LONG.max_new_tokens and cancelled.finish_reason == "stop"
            _, reply = await finish(queued)
            assert reply.completion_tokens == SHORT.max_new_tokens
            batcher.cancel(long_b)
            await finish(long_b)
            assert batcher.stats.cancelled == 2 and batcher.stats.completed == 1
            assert batcher.stats.largest_batch == 2 and batcher.running == 0
        finally:
            batcher.stop()
        admits = [e[1] for e in backend.events if e[0] == "admit"]
        releases = [e[1] for e in backend.events if e[0] == "release"]
        assert admits[2] == admits[0]  # the cancelled row's slot was reused
        assert sorted(releases) == sorted(admits) and not backend.positions

    asyncio.run(scenario())


def test_stop_cancels_running_rows_and_frees_the_engine(engine: Engine) -> None:
    backend = engine.backend
    assert isinstance(backend, ContinuousScriptedBackend)

    async def scenario() -> None:
        batcher = Batcher(engine, scheduler="continuous").start()
        job = batcher.submit([Message("user", "a")], LONG)
        await first_text(job)
        await asyncio.to_thread(batcher.stop)
        _, reply = await finish(job)
        assert reply.completion_tokens < LONG.max_new_tokens
        assert not backend.positions and not engine._lock.locked()

    asyncio.run(scenario())


def test_continuous_needs_an_engine_that_has_it(tiny_engine: Engine) -> None:
    assert Batcher(tiny_engine).scheduler == "batch"
    with pytest.raises(ConfigError, match="no continuous batching"):
        Batcher(tiny_engine, scheduler="continuous")
    with pytest.raises(ConfigError, match="no continuous batching"):
        tiny_engine.continuous()
    with pytest.raises(ConfigError, match="unknown scheduler"):
        Batcher(tiny_engine, scheduler="fifo")


def test_rows_with_different_settings_run_together(engine: Engine) -> None:
    """Rows sample on their own, so greedy, sampled and seeded requests share one running batch."""
    run = engine.continuous()
    convs = [[Message("user", "a")], [Message("user", "ب")]]
    params = [GenParams(temperature=0, max_new_tokens=5), GenParams(temperature=0.7, seed=3, max_new_tokens=3)]
    rows = [run.admit(engine.prepare([c], p), p) for c, p in zip(convs, params, strict=True)]
    assert run.live == 2 and run.free == 0
    while run.live:
        run.step()
    assert [r.reply.completion_tokens for r in rows] == [5, 3]
    assert run.steps == 4 and not engine._lock.locked()
    with pytest.raises(RuntimeError, match="unfinished"):  # a same-thread generate would otherwise hang
        run.admit(engine.prepare([convs[0]], params[0]), LONG)
        engine.generate(convs[0], params[0])
    run.close()
    assert not engine._lock.locked()


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_over_http_a_client_that_leaves_frees_its_slot_and_a_full_queue_is_429(engine: Engine) -> None:
    import httpx

    from bimedix2.serve.api import create_app
    from bimedix2.serve.background import serve_in_thread
    from bimedix2.serve.config import ServeConfig

    backend = engine.backend
    assert isinstance(backend, ContinuousScriptedBackend)
    app = create_app(engine, ServeConfig(model_id="m", max_batch_size=1, max_queue=1))
    batcher = app.state.batcher
    assert batcher.scheduler == "continuous"
    chat = {"model": "m", "messages": [{"role": "user", "content": "ما هو فقر الدم؟"}], "temperature": 0}
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json={**chat, "max_tokens": 4000, "stream": True}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()  # kept: dropping the iterator closes the response
            next(lines)  # the first chunk: it runs (one slot, as max_batch_size says)
            health = client.get("/health").json()
            assert health["running"] == 1, (health, batcher.stats, batcher.running, backend.events[-3:])
            queued = threading.Thread(target=client.post, args=("/v1/chat/completions",), kwargs={"json": chat})
            queued.start()
            wait_until(lambda: batcher.queued == 1, "the second request to queue")
            full = client.post("/v1/chat/completions", json=chat)
            assert full.status_code == 429 and full.json()["error"]["type"]
        # the stream's client has gone: its row stops, its slot goes to the queued request
        queued.join(60)
        wait_until(lambda: batcher.stats.completed == 1 and batcher.running == 0, "the queued request to finish")
        assert batcher.stats.cancelled == 1 and batcher.stats.generated_tokens < 4000 + 400
        assert not backend.positions


def test_a_failed_step_fails_its_rows_and_the_next_request_runs(engine: Engine) -> None:
    backend = engine.backend
    assert isinstance(backend, ContinuousScriptedBackend)
    backend.fail_at = 5

    async def scenario() -> None:
        batcher = Batcher(engine, scheduler="continuous").start()
        try:
            job = batcher.submit([Message("user", "a")], LONG)
            events: list[tuple[str, Any]] = []
            while not events or events[-1][0] not in ("done", "error"):
                events.append(await asyncio.wait_for(job.events.get(), 60))
            kind, error = events[-1]
            assert kind == "error" and "failed mid-step" in str(error)
            assert batcher.stats.failed == 1 and not backend.positions
            _, reply = await finish(batcher.submit([Message("user", "ب")], SHORT))
            assert reply.completion_tokens == SHORT.max_new_tokens
        finally:
            batcher.stop()

    asyncio.run(scenario())


def test_the_scheduler_flag_reaches_the_batcher(engine: Engine, tiny_engine: Engine) -> None:
    from bimedix2.cli import build_parser
    from bimedix2.commands.serve import serve_options
    from bimedix2.serve.api import create_app
    from bimedix2.serve.config import ServeConfig

    def config(*argv: str) -> ServeConfig:
        return serve_options(build_parser().parse_args(["serve", *argv])).to_config(None, None)

    assert config().scheduler == "auto"
    assert create_app(engine, config("--scheduler", "batch")).state.batcher.scheduler == "batch"
    assert create_app(engine, config()).state.batcher.scheduler == "continuous"
    with pytest.raises(ConfigError, match="--scheduler batch"):
        create_app(tiny_engine, config("--scheduler", "continuous"))
    with pytest.raises(ValueError, match="scheduler must be"):
        ServeConfig(scheduler="fifo")
