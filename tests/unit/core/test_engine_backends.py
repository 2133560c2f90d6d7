"""Engine backends: a backend defined here plugs in with one registration; per-step decode work stays linear."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from transformers.convert_slow_tokenizer import bytes_to_unicode

from bimedix2.engine import (
    BACKENDS,
    Engine,
    PreparedBatch,
    ResumableBackend,
    Sampling,
    StepFn,
    Steps,
    drive,
    get_backend,
    merge_prepared,
    register_backend,
    template_stop_ids,
)
from bimedix2.errors import ConfigError
from bimedix2.model.base import LoadedModel
from bimedix2.types import GenParams, Message

REPLY = "The heart is enlarged. القلب متضخم."
QUESTION = [Message("user", "Describe the X-ray.")]


@register_backend("scripted")
class ScriptedBackend:
    """Answers every row with `script`, one byte per token (Arabic letters span two tokens)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.tokenizer = loaded.tokenizer
        self.stop_token_ids = template_stop_ids(loaded.tokenizer, loaded.template)
        self.context_length = 4096
        self.script = byte_tokens(self.tokenizer, REPLY) + [self.stop_token_ids[0]]
        self.decoded_tokens = 0

    def encode(self, prompts: Sequence[str], images: Sequence[Any]) -> dict[str, Any]:
        rows = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        width = max(len(r) for r in rows)
        ids = [[0] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def merge(self, rows: Sequence[PreparedBatch]) -> PreparedBatch:
        return merge_prepared(rows, pad_token_id=0)

    def generate(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling, step: StepFn) -> None:
        n_rows = inputs["input_ids"].shape[0]
        for i in range(max_new_tokens):
            if all(step([self.script[i % len(self.script)]] * n_rows)):
                return

    def decode(self, token_ids: Sequence[int]) -> str:
        self.decoded_tokens += len(token_ids)
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


@register_backend("scripted-steps")
class ResumableScriptedBackend(ScriptedBackend):
    """The scripted answer from a run that pauses between steps (as the llama.cpp backend's does)."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded)
        self.threads: set[int] = set()
        self.closed_early = 0
        self.fail_at: int | None = None

    def generate(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling, step: StepFn) -> None:
        drive(self.steps(inputs, max_new_tokens=max_new_tokens, sampling=sampling), step)

    def steps(self, inputs: dict[str, Any], *, max_new_tokens: int, sampling: Sampling) -> Steps:
        n_rows = inputs["input_ids"].shape[0]
        finished = False
        try:
            for i in range(max_new_tokens):
                self.threads.add(threading.get_ident())
                if i == self.fail_at:
                    raise RuntimeError("the runtime failed mid-run")
                if all((yield [self.script[i % len(self.script)]] * n_rows)):
                    break
            finished = True
        finally:
            self.closed_early += not finished


def byte_tokens(tokenizer: Any, text: str) -> list[int]:
    """One byte-level token per UTF-8 byte of `text`."""
    chars = bytes_to_unicode()
    return [tokenizer.convert_tokens_to_ids(chars[b]) for b in text.encode()]


@pytest.fixture(params=["scripted", "scripted-steps"])
def engine(tiny_llava: LoadedModel, request: pytest.FixtureRequest) -> Engine:
    return Engine(tiny_llava, backend=request.param)


@pytest.fixture()
def resumable(tiny_llava: LoadedModel) -> Engine:
    return Engine(tiny_llava, backend="scripted-steps")


def tokens_until(backend: ScriptedBackend, stop: str) -> int:
    """How many script tokens it takes until the decoded text holds `stop`."""
    return next(n for n in range(1, len(backend.script)) if stop in backend.decode(backend.script[:n]))


def test_a_registered_backend_serves_generate_and_stream(engine: Engine) -> None:
    assert isinstance(engine.backend, ScriptedBackend)
    params = GenParams(max_new_tokens=200, temperature=0)
    reply = engine.generate(QUESTION, params)
    assert (reply.text, reply.finish_reason) == (REPLY, "stop")
    assert reply.completion_tokens == len(engine.backend.script)
    assert reply.prompt_tokens == len(
        engine.backend.tokenizer.encode(engine.render(QUESTION, params), add_special_tokens=False)
    )
    stream = engine.stream(QUESTION, params)
    pieces = list(stream)
    assert "".join(pieces) == REPLY and stream.reply == reply
    assert not any("\ufffd" in p for p in pieces)  # half an Arabic letter is never shown
    short = engine.generate(QUESTION, GenParams(max_new_tokens=5, temperature=0))
    assert (short.text, short.completion_tokens, short.finish_reason) == (REPLY[:5], 5, "length")


@pytest.mark.parametrize("stop", ["is enl", "لب مت", "م."], ids=["ascii", "arabic", "arabic-and-ascii"])
def test_stop_strings_across_tokens_and_multibyte_letters(engine: Engine, stop: str) -> None:
    params = GenParams(max_new_tokens=200, temperature=0, stop=(stop, "never"))
    expected = REPLY[: REPLY.index(stop)]
    reply = engine.generate(QUESTION, params)
    assert (reply.text, reply.finish_reason) == (expected, "stop")
    assert reply.completion_tokens == tokens_until(engine.backend, stop)
    stream = engine.stream(QUESTION, params)
    pieces = list(stream)
    assert "".join(pieces) == expected and stream.reply == reply
    assert not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("text", [REPLY, "Done 👍 تمام"], ids=["arabic", "emoji"])
def test_a_reply_cut_inside_a_character_drops_the_half(engine: Engine, text: str) -> None:
    """max_new_tokens (or a cancel) landing inside a multi-byte character: no U+FFFD, streamed or not."""
    backend = engine.backend
    backend.script = byte_tokens(backend.tokenizer, text)
    cuts = [n for n in range(1, len(backend.script)) if "\ufffd" in backend.decode(backend.script[:n])]
    assert cuts  # the script has cut points inside characters
    for n in cuts:
        params = GenParams(max_new_tokens=n, temperature=0)
        reply = engine.generate(QUESTION, params)
        whole = text.encode()[:n].decode("utf-8", errors="ignore")
        assert reply.text == whole and reply.finish_reason == "length"
        stream = engine.stream(QUESTION, params)
        assert "".join(stream) == whole == stream.reply.text


def test_stream_batch_rows_end_on_their_own(engine: Engine) -> None:
    params = [
        GenParams(max_new_tokens=4, temperature=0),
        GenParams(max_new_tokens=200, temperature=0, stop=("لب",)),
        GenParams(max_new_tokens=200, temperature=0),
    ]
    with engine._lock:  # the run waits for the lock: the cancel lands before the first token
        batch = engine.stream_batch([engine.prepare([QUESTION], p) for p in params], params)
        batch.rows[2].cancel()
    texts = [""] * 3

    def read(i: int) -> None:
        texts[i] = "".join(batch.rows[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    short, stopped, cancelled = (row.reply for row in batch.rows)
    assert (short.text, short.finish_reason) == (REPLY[:4], "length")
    assert (stopped.text, stopped.finish_reason) == (REPLY[: REPLY.index("لب")], "stop")
    assert cancelled.completion_tokens == 1 and cancelled.finish_reason == "stop"
    assert texts == [r.text for r in (short, stopped, cancelled)]


@pytest.mark.parametrize("streamed", [False, True], ids=["generate", "stream"])
def test_decode_work_grows_linearly_with_the_reply(engine: Engine, streamed: bool) -> None:
    backend = engine.backend
    backend.script = backend.script[:-1]  # no stop token: the reply runs to max_new_tokens
    volume = {}
    for n in (100, 800):
        params = GenParams(max_new_tokens=n, temperature=0, stop=("never stops",))
        backend.decoded_tokens = 0
        if streamed:
            stream = engine.stream(QUESTION, params)
            "".join(stream)
            assert stream.reply is not None and stream.reply.completion_tokens == n
        else:
            assert engine.generate(QUESTION, params).completion_tokens == n
        volume[n] = backend.decoded_tokens
    assert volume[800] <= 10 * 800  # re-decoding the whole row each step would be ~320,000
    assert volume[800] / volume[100] < 10  # linear: 8x the tokens, about 8x the decode work


def test_a_resumable_backend_streams_on_the_reading_thread(resumable: Engine) -> None:
    assert isinstance(resumable.backend, ResumableBackend)
    params = GenParams(max_new_tokens=200, temperature=0)
    stream = resumable.stream(QUESTION, params)
    assert "".join(stream) == REPLY and stream.reply == resumable.generate(QUESTION, params)
    assert resumable.backend.threads == {threading.get_ident()}  # no generation thread


def test_a_thread_streams_for_a_backend_that_cannot_pause(tiny_llava: LoadedModel) -> None:
    engine = Engine(tiny_llava, backend="scripted")
    assert not isinstance(engine.backend, ResumableBackend)
    seen: list[int] = []
    original = engine.backend.generate

    def recording(*args: Any, **kwargs: Any) -> None:
        seen.append(threading.get_ident())
        original(*args, **kwargs)

    engine.backend.generate = recording  # type: ignore[method-assign]
    assert "".join(engine.stream(QUESTION, GenParams(max_new_tokens=200, temperature=0))) == REPLY
    assert seen and seen[0] != threading.get_ident()


def finishes_in_time(fn: Any, seconds: float = 30.0) -> bool:
    """Whether `fn()` returns within `seconds` (run on a thread, so a deadlock fails the test, not the suite)."""
    done = threading.Event()
    thread = threading.Thread(target=lambda: (fn(), done.set()), daemon=True)
    thread.start()
    thread.join(seconds)
    return done.is_set()


@pytest.mark.parametrize("how", ["close", "drop", "break"])
def test_an_abandoned_stream_frees_the_engine(resumable: Engine, how: str) -> None:
    backend = resumable.backend
    params = GenParams(max_new_tokens=200, temperature=0)
    stream = resumable.stream(QUESTION, params)
    pieces = iter(stream)
    assert next(pieces)
    if how == "close":
        stream.close()
    elif how == "drop":
        del stream, pieces
    else:
        pieces.close()  # what a `for` loop left by `break` and then dropped does
        del stream, pieces
    assert backend.closed_early == 1
    assert finishes_in_time(lambda: resumable.generate(QUESTION, params))


def test_a_second_stream_on_the_same_thread_is_an_error_not_a_deadlock(resumable: Engine) -> None:
    params = GenParams(max_new_tokens=200, temperature=0)
    first = iter(resumable.stream(QUESTION, params))
    assert next(first)
    second = resumable.stream(QUESTION, params)
    with pytest.raises(RuntimeError, match="unfinished: read it to the end or close"):
        next(iter(second))
    assert "".join(first)  # the first one is untouched and finishes
    assert "".join(resumable.stream(QUESTION, params)) == REPLY


def test_a_runtime_error_mid_stream_reaches_the_reader_and_frees_the_engine(resumable: Engine) -> None:
    resumable.backend.fail_at = 3
    params = GenParams(max_new_tokens=200, temperature=0)
    with pytest.raises(RuntimeError, match="failed mid-run"):
        "".join(resumable.stream(QUESTION, params))
    resumable.backend.fail_at = None
    assert finishes_in_time(lambda: resumable.generate(QUESTION, params))


def test_unknown_backend_names_the_available_ones(tiny_llava: LoadedModel) -> None:
    assert "transformers" in BACKENDS and get_backend("scripted") is ScriptedBackend
    available = ", ".join(sorted(set(BACKENDS) | {"llama-cpp"}))  # built-ins are listed before their import
    with pytest.raises(ConfigError, match=f"^unknown engine backend 'x'. Available: {available}$"):
        Engine(tiny_llava, backend="x")
    with pytest.raises(ValueError, match="already registered"):
        register_backend("transformers")(ScriptedBackend)
    with pytest.raises(ValueError, match="already registered"):  # a built-in, even before it is imported
        register_backend("llama-cpp")(ScriptedBackend)


def test_the_llama_cpp_engine_path_does_not_import_torch() -> None:
    """Loading a GGUF and streaming a reply imports neither torch nor the transformers backend (~250 MB, ~2 s)."""
    code = (
        "import sys; from bimedix2.engine import Engine, get_backend;"
        " from bimedix2.model.llama_cpp import load_llama_cpp;"
        " from bimedix2.model.loader import embedded_default_gguf; get_backend('llama-cpp');"
        " from bimedix2.model.llama_cpp_lib import llama_cpp_available; from bimedix2.types import GenParams, Message;"
        " e = Engine(load_llama_cpp(embedded_default_gguf()), backend='llama-cpp') if llama_cpp_available() else None;"
        " e and ''.join(e.stream([Message('user', 'Hi')], GenParams(max_new_tokens=2, temperature=0)));"
        " print(sorted(m for m in ('torch', 'bimedix2.engine.transformers_backend') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
