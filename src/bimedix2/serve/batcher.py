"""Request scheduling: a bounded queue of chat requests and one scheduler thread that owns the engine.

Two schedulers (`Batcher(scheduler=...)`, `bimedix2 serve --scheduler`):

- **continuous** (the default where the engine has it: llama.cpp): a request is admitted
  between decoding steps of the running batch (prefilled into a free sequence slot, its first
  token out at once) and leaves the moment it ends, freeing its slot; rows sample on their own,
  so any requests can run together, up to `max_batch_size`.
- **batch** (dynamic batching; the transformers engine): when the engine is free, take the
  oldest waiting request plus every waiting request that can share its sampling settings (up to
  `max_batch_size`, waiting `batch_window_s` for stragglers) and stream them together through
  `Engine.stream_batch`; requests arriving meanwhile wait for that batch to end.

Either way each request is prepared on its own (so one bad image fails only its own request),
rows finish and answer independently, and a cancelled row (client gone, timeout) stops at the
next token.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine, Row, TextStream
from ..engine.continuous import ContinuousBatch
from ..errors import ConfigError
from ..types import GenParams, Message, Reply

log = logging.getLogger(__name__)
SCHEDULERS = ("auto", "continuous", "batch")
"""`auto`: continuous where the engine's backend admits rows between steps, else batch."""


class QueueFullError(RuntimeError):
    """The request queue is full; the client should retry later (HTTP 429)."""


@dataclass
class Job:
    """One chat request travelling through the scheduler; events go to the caller's asyncio loop."""

    messages: Sequence[Message]
    params: GenParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    arrived: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    row: TextStream | Row | None = None

    def key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one generate call (seeded ones run alone, to stay reproducible)."""
        p = self.params
        if p.seed is not None:
            return ("seed", id(self))
        return ("sample", p.temperature, p.top_p) if p.sampling else ("greedy",)

    def emit(self, kind: str, value: object = None) -> None:
        """Hand an event ("start", "text", "done", "error") to the waiting request handler."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))

    def cancel(self) -> None:
        """Stop this request: skipped if still queued, stopped at the next token if running."""
        self.cancelled.set()
        row = self.row
        if row is not None:
            row.cancel()


@dataclass
class Stats:
    """Counters for /health and tests (no request content).

    `batches`: generation runs (batch scheduler: one per batch; continuous: one per stretch of
    work that starts from idle); `largest_batch`: most rows running at once; `steps`: decoding
    steps of the continuous scheduler."""

    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    batches: int = 0
    largest_batch: int = 0
    generated_tokens: int = 0
    steps: int = 0


class Batcher:
    """Owns the engine; `submit` queues a job, the scheduler thread batches and runs jobs."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int = 8,
        max_queue: int = 64,
        batch_window_s: float = 0.02,
        scheduler: str = "auto",
    ):
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if scheduler == "continuous" and not engine.continuous_batching:
            raise ConfigError(
                f"the {type(engine.backend).__name__} engine has no continuous batching (rows joining between "
                "decoding steps); use --scheduler batch, or the llama-cpp engine"
            )
        self.scheduler = "continuous" if scheduler != "batch" and engine.continuous_batching else "batch"
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.batch_window_s = batch_window_s
        self.stats = Stats()
        self.running = 0
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._current: list[Job] = []
        self._thread = threading.Thread(target=self._loop, name="bimedix2-batcher", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, cancel whatever is queued or running, and join the scheduler thread."""
        with self._cond:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in pending:
            job.cancel()
            job.emit("error", RuntimeError("the server is shutting down"))
        for job in list(self._current):  # running rows stop at their next token
            job.cancel()
        self._thread.join(timeout)

    def cancel(self, job: Job) -> None:
        """Stop `job`: a queued one leaves the queue now (freeing its place), a running one stops at its next token."""
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                pass  # already taken by the scheduler (or finished): its row is cancelled below
            else:
                self.stats.cancelled += 1
                job.cancelled.set()
                return
        job.cancel()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, messages: Sequence[Message], params: GenParams) -> Job:
        """Queue a request; raises `QueueFullError` when `max_queue` requests are already waiting."""
        job = Job(messages, params, asyncio.get_running_loop())
        with self._cond:
            if self._stopping:
                raise QueueFullError("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"the request queue is full ({self.max_queue} waiting); retry shortly")
            self._queue.append(job)
            self._cond.notify_all()
        return job

    # ------------------------------------------------------------------------------ scheduler
    def _take(self) -> list[Job]:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return []
            deadline = time.monotonic() + self.batch_window_s
            key = self._queue[0].key()
            while True:
                same = [j for j in self._queue if j.key() == key]
                remaining = deadline - time.monotonic()
                if len(same) >= self.max_batch_size or remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
            jobs = same[: self.max_batch_size]
            for job in jobs:
                self._queue.remove(job)
            return jobs

    def _loop(self) -> None:
        if self.scheduler == "continuous":
            self._loop_continuous()
            return
        while not self._stopping:
            jobs = self._take()
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        live: list[Job] = []
        prepared = []
        for job in jobs:
            if job.cancelled.is_set():
                self.stats.cancelled += 1
                continue
            try:
                prepared.append(self.engine.prepare([job.messages], job.params))
                live.append(job)
            except Exception as exc:  # the handler maps toolkit errors to 4xx, anything else to 500
                self.stats.failed += 1
                job.emit("error", exc)
        if not live:
            return
        try:
            batch = self.engine.stream_batch(prepared, [j.params for j in live])
        except Exception as exc:
            for job in live:
                self.stats.failed += 1
                job.emit("error", exc)
            return
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        self.running = len(live)
        self._current = live
        forwarders = []
        for job, row in zip(live, batch.rows, strict=True):
            job.row = row
            if job.cancelled.is_set():
                row.cancel()
            forwarder = threading.Thread(target=self._forward, args=(job, row), daemon=True)
            forwarder.start()
            forwarders.append(forwarder)
        batch.join()
        for forwarder in forwarders:
            forwarder.join()
        self.running = 0
        self._current = []
        if log.isEnabledFor(logging.INFO):
            log.info("batch of %d done", len(live))

    def _forward(self, job: Job, row: TextStream) -> None:
        try:
            job.emit("start")
            for piece in row:
                job.emit("text", piece)
            reply: Reply | None = row.reply
            assert reply is not None
            self._done(job, reply)
        except Exception as exc:
            self.stats.failed += 1
            job.emit("error", exc)

    # ------------------------------------------------------------------- continuous scheduler
    def _loop_continuous(self) -> None:
        while True:
            run = self.engine.continuous()
            try:
                if self._serve_continuous(run):
                    return
            except Exception as exc:  # never leave requests hanging on a dead scheduler thread
                log.exception("the continuous scheduler failed; its running requests get the error")
                for job in list(self._current):
                    if isinstance(job.row, Row):
                        job.row.fail(exc)
            finally:
                run.close()
                for job in list(self._current):
                    self._deliver(job)
                self._note_running(run)

    def _serve_continuous(self, run: ContinuousBatch) -> bool:
        """Admit waiting requests between decoding steps until stopped (returns True then)."""
        width = min(self.max_batch_size, run.free)
        while True:
            with self._cond:
                while not self._queue and not run.live and not self._stopping:
                    self._cond.wait()
                if self._stopping and not run.live:
                    return True
                newcomers = [self._queue.popleft() for _ in range(min(len(self._queue), width - run.live))]
            if newcomers and not run.live:
                self.stats.batches += 1
            for job in newcomers:
                self._admit(run, job)
            self._note_running(run)
            if run.live:
                before = run.steps
                ended = run.step()
                self.stats.steps += run.steps - before
                for job in list(self._current):
                    self._deliver(job)
                if ended:
                    self._note_running(run)

    def _admit(self, run: ContinuousBatch, job: Job) -> None:
        """Prepare and prefill one request between steps; its first text goes out at once."""
        if job.cancelled.is_set():
            self.stats.cancelled += 1
            return
        try:
            row = run.admit(self.engine.prepare([job.messages], job.params), job.params)
        except Exception as exc:  # the handler maps toolkit errors to 4xx, anything else to 500
            self.stats.failed += 1
            job.emit("error", exc)
            return
        job.row = row
        if job.cancelled.is_set():
            row.cancel()
        job.emit("start")
        self._current.append(job)
        self._deliver(job)

    def _deliver(self, job: Job) -> None:
        """Hand a running job's new text to its handler; when its row has ended, its reply (or error)."""
        row = job.row
        assert isinstance(row, Row)
        piece = row.ready()
        if piece:
            job.emit("text", piece)
        if not row.finished:
            return
        self._current.remove(job)
        self.running = len(self._current)  # before the handler hears of it
        if row.error is not None:
            self.stats.failed += 1
            job.emit("error", row.error)
            return
        self._done(job, row.result())

    def _done(self, job: Job, reply: Reply) -> None:
        """A row that ended without an error: counted (completed, or cancelled by its client) and delivered."""
        if job.cancelled.is_set():
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1
        self.stats.generated_tokens += reply.completion_tokens
        job.emit("done", reply)

    def _note_running(self, run: ContinuousBatch) -> None:
        self.running = run.live
        self.stats.largest_batch = max(self.stats.largest_batch, run.live)
