"""Continuous batching: conversations join a running batch between decoding steps and leave when they end.

`ContinuousBatch` drives a `ContinuousBackend` for one thread (the server's scheduler): `admit`
prefills a conversation into a free sequence slot (its first token is ready at once), `step`
decodes one token of every live row, and a row that ends (stop token, stop string, its own
max_new_tokens, cancel) frees its slot before the next step. The engine is held while any row
is live, so no other generation run can touch the backend's sequences in between.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..types import GenParams
from .backend import ContinuousBackend, PreparedBatch, Sampling
from .streams import Row

if TYPE_CHECKING:
    from .core import Engine


class ContinuousBatch:
    """Rows admitted between steps of one running batch; drive it from one thread only."""

    def __init__(self, engine: Engine) -> None:
        backend = engine.backend
        if not isinstance(backend, ContinuousBackend):
            raise ConfigError(
                f"the {type(backend).__name__} engine backend cannot admit rows between decoding steps "
                "(no continuous batching); use the batch scheduler"
            )
        self.engine = engine
        self.backend: ContinuousBackend = backend
        self.steps = 0  # decoding steps run (admissions not counted)
        self._rows: dict[int, Row] = {}  # slot -> its row
        self._holding = False

    @property
    def live(self) -> int:
        """Rows running now."""
        return len(self._rows)

    @property
    def free(self) -> int:
        """Rows that can be admitted before the next step."""
        return self.backend.slots - len(self._rows)

    def admit(self, prepared: PreparedBatch, params: GenParams) -> Row:
        """Start one conversation from `Engine.prepare([conv], params)`; its first token is pushed already.

        The returned row is streamed (`Row.ready`, `Row.reply` once `Row.finished`) and may have
        ended at once (a one-token reply). Raises what the backend raises (e.g. no free slot)."""
        if len(prepared.prompt_tokens) != 1:
            raise ValueError("admit takes one conversation from Engine.prepare([conv], params)")
        row = self.engine._row(prepared, 0, params, streamed=True)
        self._hold()
        try:
            slot, token = self.backend.admit(prepared.inputs, Sampling.of(params))
        except BaseException:
            self._let_go()
            raise
        self._rows[slot] = row
        if row.push(token):
            self._leave(slot)
        return row

    def step(self) -> list[Row]:
        """One decoding step of every live row; returns the rows that ended (cancelled ones end before it).

        A backend failure ends every live row with that error (`Row.error`) rather than raising."""
        ended: list[Row] = []
        for slot, row in list(self._rows.items()):
            if row.cancelled.is_set():  # no further token for a row whose client has gone
                row.end()
                ended.append(self._leave(slot))
        slots = list(self._rows)
        if slots:
            try:
                tokens = self.backend.step(slots)
            except Exception as exc:  # handed to each row's reader, like a failed batch run
                for slot in slots:
                    self._rows[slot].fail(exc)
                    ended.append(self._leave(slot))
            else:
                self.steps += 1
                for slot, token in zip(slots, tokens, strict=True):
                    if self._rows[slot].push(token):
                        ended.append(self._leave(slot))
        return ended

    def close(self) -> None:
        """End every live row now (as if cancelled) and free the engine."""
        for slot, row in list(self._rows.items()):
            row.cancel()
            row.end()
            self._leave(slot)
        self._let_go()

    def _leave(self, slot: int) -> Row:
        row = self._rows.pop(slot)
        self.backend.release(slot)
        if not self._rows:
            self._let_go()
        return row

    def _hold(self) -> None:
        if not self._holding:
            if self.engine._paused_on == threading.get_ident():  # waiting would wait for ourselves
                raise RuntimeError("a generation run on this thread is unfinished; end it before admitting rows")
            self.engine._lock.acquire()
            self.engine._paused_on = threading.get_ident()  # a generate on this thread fails instead of hanging
            self._holding = True

    def _let_go(self) -> None:
        if self._holding and not self._rows:
            self._holding = False
            self.engine._paused_on = None
            self.engine._lock.release()
