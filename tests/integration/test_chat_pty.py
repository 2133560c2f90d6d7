"""`bimedix2 chat` and `ask` driven through a pseudo-terminal, as a person at a terminal uses them.

The real CLI with the embedded default model (SmolLM2-135M-Instruct), greedy decoding and few
new tokens. What the conversation holds is checked through /save's JSON, not the screen.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "bimedix2"
PROMPT = "you> "
LONG_QUESTION = "Write a long, detailed essay on the history of medicine, from ancient Egypt to today."
CRASH_SIGNS = ("terminate called", "Traceback", "Aborted")


@pytest.fixture(scope="module", autouse=True)
def _embedded_model() -> None:
    from bimedix2.model.loader import embedded_default_gguf

    try:
        embedded_default_gguf()
    except Exception as exc:  # noqa: BLE001 - report why the real model is absent
        pytest.skip(f"embedded default model not installed: {exc}")


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def _env(home: Path) -> dict[str, str]:
    from bimedix2.model.base import cache_dir

    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "BIMEDIX2_"))}
    env.update(
        TERM="xterm",
        COLUMNS="100",
        LINES="40",
        PYTHONUNBUFFERED="1",
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        BIMEDIX2_CACHE_DIR=str(cache_dir()),  # the converted embedded model, not a fresh conversion
        HF_HUB_OFFLINE="1",
    )
    return env


def _spawn(home: Path, *args: str, engine: str = "llama-cpp", tokens: int = 12):  # noqa: ANN202
    argv = [args[0], "--engine", engine, "--temperature", "0", "--max-new-tokens", str(tokens), *args[1:]]
    child = pexpect.spawn(
        str(CLI),
        argv,
        env=_env(home),
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 100),
        codec_errors="replace",
        # a terminal where Ctrl-C works: a CI job started in the background (`cmd &`) has SIGINT
        # ignored, which children inherit and Python then keeps ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    child.logfile_read = _Transcript()
    return child


class _Transcript:
    """Everything the child printed (stdout and stderr share the terminal)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


def _finish(child, status: int = 0) -> str:  # noqa: ANN001
    child.expect(pexpect.EOF)
    child.close()
    transcript = child.logfile_read.text()
    assert child.exitstatus == status, (child.exitstatus, child.signalstatus, transcript[-2000:])
    for sign in CRASH_SIGNS:
        assert sign not in transcript, transcript[-2000:]
    return transcript


def _interrupt(child, *reaction: object) -> None:  # noqa: ANN001
    """Ctrl-C typed at the terminal, then wait for `reaction` (expect patterns)."""
    child.sendintr()
    child.expect(list(reaction))


def _say(child, line: str) -> None:  # noqa: ANN001
    child.expect_exact(PROMPT)
    child.send(line + "\r")


def _saved(child, path: Path) -> list[dict]:  # noqa: ANN001
    _say(child, f"/save {path}")
    child.expect_exact("saved")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "bimedix2-chat" and doc["version"] == 1
    return doc["messages"]


@pytest.mark.parametrize("engine", ["llama-cpp", "transformers"])
def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(home: Path, tmp_path: Path, engine: str) -> None:
    child = _spawn(home, "chat", engine=engine, tokens=1000)
    _say(child, LONG_QUESTION)
    child.expect(r"essay on the history of medicine[^\n]*\n")  # the echoed line
    child.expect(r"[A-Za-z]{3,}")  # the answer has started streaming
    _interrupt(child, r"\(stopped;")
    _say(child, "/set max_new_tokens 24")
    child.expect_exact("max_new_tokens 24")
    _say(child, "Which organ in the body pumps blood?")
    child.expect_exact("[Research use only")
    messages = _saved(child, tmp_path / "after.json")
    # the stopped answer and its question are left out; the next question was answered
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Which organ in the body pumps blood?"
    assert "heart" in messages[1]["content"].lower()
    child.expect_exact(PROMPT)
    child.sendeof()
    _finish(child, 0)


@pytest.mark.parametrize("leave", ["ctrl-d", "ctrl-c", "/quit"])
def test_leaving_at_the_prompt_exits_0(home: Path, leave: str) -> None:
    child = _spawn(home, "chat")
    child.expect_exact(PROMPT)
    if leave == "ctrl-d":
        child.sendeof()
    elif leave == "ctrl-c":
        _interrupt(child, pexpect.EOF)
    else:
        child.send("/quit\r")
    _finish(child, 0)


@pytest.mark.parametrize("engine", ["llama-cpp", "transformers"])
def test_ask_ctrl_c_exits_130_cleanly(home: Path, engine: str) -> None:
    child = _spawn(home, "ask", LONG_QUESTION, engine=engine, tokens=1000)
    child.expect(r"[A-Za-z]{3,}")
    _interrupt(child, pexpect.EOF)
    transcript = _finish(child, 130)
    assert "bimedix2: interrupted" in transcript


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_termination_mid_answer_restores_the_terminal(home: Path, signum: int) -> None:
    import termios

    child = _spawn(home, "chat", "--no-history", tokens=1000)
    _say(child, LONG_QUESTION)
    child.expect(r"essay on the history of medicine[^\n]*\n")
    child.expect(r"[A-Za-z]{3,}")  # streaming: echo is off now
    assert not termios.tcgetattr(child.child_fd)[3] & termios.ECHO
    child.kill(signum)
    child.expect(pexpect.EOF)
    # master and slave share one termios state: what the user's shell would find after the exit
    assert termios.tcgetattr(child.child_fd)[3] & termios.ECHO
    child.close()
    assert child.exitstatus == 128 + signum, (child.exitstatus, child.signalstatus)


def test_history_is_recalled_in_the_next_session(home: Path, tmp_path: Path) -> None:
    first = _spawn(home, "chat")
    _say(first, "What is anemia?")
    _say(first, f"/image {tmp_path / 'patient_name_cxr.png'}")  # refused (text-only model) and never saved
    first.expect_exact("error:")
    first.expect_exact(PROMPT)
    first.sendeof()
    _finish(first, 0)

    history = home / "data" / "bimedix2" / "chat_history"
    assert history.read_text(encoding="utf-8").splitlines() == ["What is anemia?"]
    assert stat.S_IMODE(history.stat().st_mode) == 0o600

    second = _spawn(home, "chat")
    second.expect_exact(PROMPT)
    second.send("\x1b[A")  # Up: the last line of the first session
    second.expect_exact("What is anemia?")
    second.send("\r")
    second.expect_exact("[Research use only")
    assert [m["content"] for m in _saved(second, tmp_path / "s.json")][:1] == ["What is anemia?"]
    second.expect_exact(PROMPT)
    second.sendeof()
    _finish(second, 0)

    third = _spawn(home, "chat", "--no-history")
    _say(third, "Which organ in the body pumps blood?")
    third.expect_exact(PROMPT)
    third.sendeof()
    _finish(third, 0)
    assert "pumps blood" not in history.read_text(encoding="utf-8")


def test_save_load_round_trip_multiline_and_a_bad_file(home: Path, tmp_path: Path) -> None:
    saved, again, bad = tmp_path / "chat.json", tmp_path / "again.json", tmp_path / "bad.json"
    bad.write_text('{"format": "bimedix2-chat", "version": 1, "messages": [', encoding="utf-8")
    child = _spawn(home, "chat", "--no-history")
    _say(child, "/system You are a concise medical assistant.")
    _say(child, '"""')
    child.expect_exact("... ")
    child.send("What is anemia?\r")
    child.expect_exact("... ")
    child.send('Answer in one sentence."""\r')
    child.expect_exact("[Research use only")
    first = _saved(child, saved)
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[1]["content"] == "What is anemia?\nAnswer in one sentence."
    _say(child, "/reset")
    _say(child, f"/load {bad}")
    child.expect_exact("not valid JSON")
    child.expect_exact("nothing was changed")
    _say(child, '"""')
    child.expect_exact("... ")
    child.send("a block never finished\r")
    child.expect_exact("... ")
    _interrupt(child, r"\(multi-line message discarded\)")  # drops the block, not the chat
    _say(child, f"/load {saved}")
    child.expect_exact("(loaded 2 message(s)")
    assert _saved(child, again) == first
    _say(child, "/retry")  # answers the loaded question again, replacing its answer
    child.expect_exact("[Research use only")
    assert [m["role"] for m in _saved(child, again)] == ["system", "user", "assistant"]
    child.expect_exact(PROMPT)
    child.sendeof()
    _finish(child, 0)


def test_lines_typed_while_an_answer_streams_are_discarded(home: Path, tmp_path: Path) -> None:
    child = _spawn(home, "chat", "--no-history", tokens=400)
    _say(child, LONG_QUESTION)
    child.expect(r"essay on the history of medicine[^\n]*\n")
    child.send("typed too early\r")
    child.expect_exact("were discarded")
    messages = _saved(child, tmp_path / "c.json")
    assert [m["content"] for m in messages if m["role"] == "user"] == [LONG_QUESTION]
    child.expect_exact(PROMPT)
    child.sendeof()
    _finish(child, 0)


def test_cut_arabic_answers_show_no_replacement_character(home: Path, tmp_path: Path) -> None:
    child = _spawn(home, "chat", "--no-history", "--steer-language", tokens=3)
    child.expect_exact("--steer-language is ignored")
    notes = 0
    answers = []
    for tokens in range(3, 12):
        _say(child, f"/set max_new_tokens {tokens}")
        _say(child, "ما هي أعراض فقر الدم؟")
        child.expect_exact("[Research use only")
        messages = _saved(child, tmp_path / f"ar{tokens}.json")
        answers.append(messages[-1]["content"])
        _say(child, "/reset")
    child.expect_exact(PROMPT)
    child.sendeof()
    transcript = _finish(child, 0)
    notes = transcript.count("English-only and answers Arabic poorly")
    assert notes == 1, transcript[-2000:]
    assert "MBZUAI/BiMediX2-8B-hf" in transcript
    assert all(answers), answers
    assert not [a for a in answers if "\ufffd" in a], answers
    assert "\ufffd" not in transcript
