"""Rows of a generation run and the streams that read them.

A `Row` is one conversation inside a (possibly batched) run: it takes its tokens one step at a
time, decides when it ends (stop token, stop string, its own max_new_tokens, cancel) and, when
streamed, queues text pieces that never show part of a stop string or half a character.
Detokenizing is incremental and stop strings are searched only in the newly decoded tail, so
the per-step work does not grow with the reply's length.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING

from ..conversation import detect_language
from ..types import GenParams, Reply

if TYPE_CHECKING:
    from .core import Engine


class IncrementalDetokenizer:
    """Text deltas in O(1) decode work per step (the prefix/read-offset scheme vLLM uses).

    Decoding a short window that starts a few tokens back keeps SentencePiece's leading-space
    handling and multi-token UTF-8 characters right; a delta ending in U+FFFD waits for more
    bytes, and meanwhile `pending` holds the text decoded so far past the last delta.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.pending = ""

    def add(self, tokens: Sequence[int]) -> str:
        """Append tokens; return the text they complete (possibly empty)."""
        if not tokens:
            return ""
        self.ids.extend(tokens)
        prefix = self.decode(self.ids[self.prefix_offset : self.read_offset])
        full = self.decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            self.pending = ""
            return full[len(prefix) :]
        self.pending = full[len(prefix) :]
        return ""


def cut_at_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `text`, or None."""
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters to hold back: an incomplete UTF-8 character or a stop-string prefix."""
    hold = 1 if text.endswith("\ufffd") else 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return hold


class Row:
    """One conversation in a generation run; `push` feeds it tokens, `reply` is set when it ends."""

    def __init__(
        self,
        engine: Engine,
        params: GenParams,
        *,
        max_new_tokens: int,
        prompt_tokens: int,
        language: str,
        streamed: bool,
    ) -> None:
        self.engine = engine
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.prompt_tokens = prompt_tokens
        self.language = language
        self.ids: list[int] = []
        self.finished = False
        self.reply: Reply | None = None
        self.error: BaseException | None = None
        self.cancelled = threading.Event()
        self._stops = tuple(s for s in params.stop if s)
        self._tail_chars = max((len(s) for s in self._stops), default=1) - 1
        self._tail = ""  # the last decoded characters a stop string may still start in
        self._detok = IncrementalDetokenizer(engine.backend.decode) if streamed or self._stops else None
        self._queue: queue.Queue[str | None] | None = queue.Queue() if streamed else None
        self._unsent = ""  # decoded text held back from the stream
        self._sent: list[str] = []

    def cancel(self) -> None:
        """End this row at its next token."""
        self.cancelled.set()

    def push(self, token: int) -> bool:
        """Take this row's next token; return whether the row has ended."""
        if self.finished:
            return True
        self.ids.append(token)
        if token in self.engine.stop_token_set:
            self.end()
        elif self._detok is not None and self._advance(token):
            self.end()
        elif len(self.ids) >= self.max_new_tokens or self.cancelled.is_set():
            self.end()
        return self.finished

    def _advance(self, token: int) -> bool:
        """Decode the new token; queue what can be shown; return whether a stop string completed."""
        assert self._detok is not None
        delta = self._detok.add([token])
        if self._stops:
            window = self._tail + delta + self._detok.pending
            if any(s in window for s in self._stops):
                return True
            seen = self._tail + delta
            self._tail = seen[max(0, len(seen) - self._tail_chars) :]
        if self._queue is not None and delta:
            self._unsent += delta
            ready = len(self._unsent) - held_back(self._unsent, self._stops)
            if ready:
                self._send(self._unsent[:ready])
                self._unsent = self._unsent[ready:]
        return False

    def _send(self, piece: str) -> None:
        assert self._queue is not None
        self._sent.append(piece)
        self._queue.put(piece)

    def end(self) -> None:
        """Finish the row now (no-op if it has ended): build its reply and flush its stream."""
        if self.finished:
            return
        self.reply = self._build_reply()
        self.finished = True
        if self._queue is not None:
            sent = "".join(self._sent)
            if not self.reply.text.startswith(sent):  # cannot happen for prefix-stable decoders; never hide it
                self.error = RuntimeError("streamed text diverged from the final decode")
            elif len(self.reply.text) > len(sent):
                self._send(self.reply.text[len(sent) :])
            self._queue.put(None)

    def _build_reply(self) -> Reply:
        text, n_tokens, finish = self.engine.decode(self.ids, self.params)
        if finish == "length" and n_tokens < self.max_new_tokens:
            finish = "stop"  # ended by a stop string or cancel
        language = detect_language(text) if text.strip() else self.language
        return Reply(text, language, self.prompt_tokens, n_tokens, finish)  # type: ignore[arg-type]

    def fail(self, error: BaseException) -> None:
        """End the row with `error` (no-op if it has ended); its reader re-raises it."""
        if self.finished:
            return
        self.finished = True
        self.error = error
        if self._queue is not None:
            self._queue.put(None)

    def result(self) -> Reply:
        """The finished reply, or the error that ended the row."""
        if self.error is not None:
            raise self.error
        assert self.reply is not None, "the row has not ended"
        return self.reply

    def ready(self) -> str:
        """The streamed text queued so far, joined, without waiting ('' if none)."""
        assert self._queue is not None, "the row is not streamed"
        parts = []
        while True:
            try:
                piece = self._queue.get_nowait()
            except queue.Empty:
                return "".join(parts)
            if piece is not None:
                parts.append(piece)

    def pieces(self) -> Iterator[str]:
        """Streamed text as it arrives; pieces queued while the reader was busy come joined as one."""
        assert self._queue is not None, "the row is not streamed"
        while True:
            piece = self._queue.get()
            if piece is None:
                return
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    yield piece
                    return
                piece += more
            yield piece


class TextStream:
    """Iterate for text pieces; afterwards `reply` holds the finished `Reply`.

    The pieces concatenate to exactly `reply.text`, the same text `Engine.generate` returns
    for the same inputs. `cancel()` stops this conversation at the next token. Given `steps`
    (the engine's generation run, paused after every step), the stream generates on the reading
    thread as it is read; `close()` (or dropping an unfinished stream) ends that run.
    """

    def __init__(
        self, row: Row, wait: Callable[[], None] | None = None, *, steps: Generator[None, None, None] | None = None
    ) -> None:
        self.row = row
        self.reply: Reply | None = None
        self._wait = wait
        self._steps = steps

    def cancel(self) -> None:
        """Stop generating as soon as the current step ends."""
        self.row.cancel()

    def close(self) -> None:
        """End a stream generated on the reading thread now, freeing the engine (no-op otherwise)."""
        if self._steps is not None:
            self._steps.close()

    def __iter__(self) -> Iterator[str]:
        if self._steps is None:
            yield from self.row.pieces()
            if self._wait is not None:
                self._wait()
        else:
            with contextlib.closing(self._steps):
                for _ in self._steps:
                    piece = self.row.ready()
                    if piece:
                        yield piece
            piece = self.row.ready()
            if piece:
                yield piece
        self.reply = self.row.result()


class BatchStream:
    """One generation run streamed on its own thread; `rows[i]` streams conversation i.

    With `wait_for_run`, a row's stream also waits for the run to end (a single stream leaves
    the engine idle when it is read); otherwise rows finish independently of the batch.
    """

    def __init__(self, run: Callable[[Sequence[Row]], None], rows: Sequence[Row], *, wait_for_run: bool = False):
        self._run = run
        self._rows = list(rows)
        self._thread = threading.Thread(target=self._work, daemon=True)
        self.rows = [TextStream(row, self.join if wait_for_run else None) for row in self._rows]

    def start(self) -> BatchStream:
        """Start generating on a background thread."""
        self._thread.start()
        return self

    def _work(self) -> None:
        try:
            self._run(self._rows)
        except BaseException as exc:  # handed to every unfinished row's reader
            for row in self._rows:
                row.fail(exc)

    def cancel(self) -> None:
        """Cancel every row."""
        for row in self.rows:
            row.cancel()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the run to end."""
        self._thread.join(timeout)


RowStream = TextStream  # a row of a BatchStream streams like any other TextStream
