"""`bimedix2 chat` at a terminal: readline editing, persistent history, path completion,
multi-line input, and what Ctrl-C and typed-ahead keys do while an answer streams.

Nothing here runs a model. With stdin not a terminal (piped), readline is never imported and
lines are read as turns, as before.
"""

from __future__ import annotations

import contextlib
import glob
import os
import select
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

HISTORY_LIMIT = 1000
BLOCK_QUOTE = '"""'
PATH_COMMANDS = ("/image", "/load", "/save")


def history_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where typed lines are kept: $XDG_DATA_HOME/bimedix2/chat_history, else ~/.local/share/bimedix2/."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME", "")
    if not base or not Path(base).is_absolute():  # the XDG spec: a relative value is ignored
        home = env.get("HOME") or str(Path.home())
        base = str(Path(home) / ".local" / "share")
    return Path(base) / "bimedix2" / "chat_history"


def encode_entry(entry: str) -> str:
    """One history entry as one line of the file (a multi-line message keeps its line breaks)."""
    return entry.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def decode_entry(line: str) -> str:
    """The entry `encode_entry` wrote."""
    out, i = [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def kept_in_history_file(entry: str) -> bool:
    """Whether a typed entry goes to the history file: not blank, and not /image (file names may identify patients)."""
    word = entry.strip().split(maxsplit=1)[0].lower() if entry.strip() else ""
    return bool(word) and word != "/image"


class History:
    """Typed lines: recalled with Up/Down (readline) and, unless `path` is None, kept in a text file.

    The file is the user's own (created readable by them only), one entry per line, the newest
    last; it holds what was typed, never images or answers.
    """

    def __init__(self, path: Path | None, *, limit: int = HISTORY_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self.entries: list[str] = []

    def load(self) -> list[str]:
        """The saved entries (the newest `limit`); a missing or unreadable file is an empty history."""
        if self.path is None:
            return []
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        self.entries = [decode_entry(line) for line in lines if line][-self.limit :]
        if len(lines) > 2 * self.limit:  # keep the file from growing without end
            from ..fileio import atomic_write_text

            with contextlib.suppress(OSError):
                atomic_write_text(self.path, "".join(encode_entry(e) + "\n" for e in self.entries))
                self.path.chmod(0o600)
        return list(self.entries)

    def add(self, entry: str) -> bool:
        """Remember `entry` (not a repeat of the previous one); return whether it was written to the file."""
        if not entry.strip() or (self.entries and self.entries[-1] == entry):
            return False
        self.entries.append(entry)
        if self.path is None or not kept_in_history_file(entry):
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(encode_entry(entry) + "\n")
        except OSError as exc:
            print(f"bimedix2: note: history not saved to {self.path}: {exc.strerror or exc}", file=sys.stderr)
            self.path = None  # say it once
            return False
        return True


class BlockReader:
    """Multi-line messages: a line starting with \"\"\" opens a block, a line ending with \"\"\" closes it."""

    def __init__(self) -> None:
        self.lines: list[str] | None = None

    @property
    def active(self) -> bool:
        """Whether a block is open (the next line continues it)."""
        return self.lines is not None

    def cancel(self) -> None:
        """Drop an open block."""
        self.lines = None

    def feed(self, line: str) -> str | None:
        """The message `line` completes, or None while a block is still open."""
        if self.lines is None:
            stripped = line.lstrip()
            if not stripped.startswith(BLOCK_QUOTE):
                return line
            body = stripped[len(BLOCK_QUOTE) :]
            if body.rstrip().endswith(BLOCK_QUOTE):  # opened and closed on one line (a recalled block too)
                return body.rstrip()[: -len(BLOCK_QUOTE)]
            self.lines = [body] if body else []
            return None
        if line.rstrip().endswith(BLOCK_QUOTE):
            last = line.rstrip()[: -len(BLOCK_QUOTE)]
            lines = [*self.lines, last] if last else self.lines
            self.lines = None
            return "\n".join(lines)
        self.lines.append(line)
        return None


def completions(line: str, begidx: int, text: str, commands: Sequence[str]) -> list[str]:
    """Tab completions for the word `text` at `begidx` of `line`: command names, or paths after /image, /load, /save."""
    before = line[:begidx]
    if not before.strip():
        return [c + " " for c in commands if c.startswith(text)] if text.startswith("/") else []
    if before.split()[0].lower() not in PATH_COMMANDS:
        return []
    matches = []
    for found in sorted(glob.glob(glob.escape(os.path.expanduser(text)) + "*")):
        shown = text + found[len(os.path.expanduser(text)) :] if text.startswith("~") else found
        matches.append(shown + "/" if os.path.isdir(found) else shown)
    return matches


class Terminal:
    """Reads the user's lines: readline (editing, history, completion) at a terminal, plain lines when piped."""

    def __init__(self, history: History, commands: Sequence[str], *, interactive: bool) -> None:
        self.history = history
        self.interactive = interactive
        self._readline: Any = None
        if interactive:
            self._readline = _setup_readline(history, commands)

    def read(self, prompt: str) -> str:
        """One line (EOFError at the end, KeyboardInterrupt on Ctrl-C); the prompt only at a terminal."""
        if not self.interactive:
            return input("")
        if not sys.stdout.isatty():  # keep the prompt out of redirected answers
            sys.stderr.write(prompt)
            sys.stderr.flush()
            return input("")
        return input(prompt)

    def remember(self, entry: str) -> None:
        """Add a complete message or command to the history (recalled with Up, saved unless --no-history)."""
        if not self.interactive:
            return
        before = len(self.history.entries)
        self.history.add(entry)
        if self._readline is not None and len(self.history.entries) > before:
            self._readline.add_history(entry)


def _setup_readline(history: History, commands: Sequence[str]) -> Any:
    try:
        import readline
    except ImportError:  # Python built without it: plain input() still works
        return None
    readline.set_auto_history(False)
    readline.clear_history()
    readline.set_history_length(history.limit)
    for entry in history.load():
        readline.add_history(entry)
    readline.set_completer_delims(" \t\n")

    def complete(text: str, state: int) -> str | None:
        options = completions(readline.get_line_buffer(), readline.get_begidx(), text, commands)
        return options[state] if state < len(options) else None

    readline.set_completer(complete)
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    return readline


# --------------------------------------------------------------------------- while an answer streams
class Cancellable(Protocol):
    def cancel(self) -> None: ...


class CtrlCStops:
    """While active, Ctrl-C (SIGINT) stops the answer being streamed instead of raising KeyboardInterrupt.

    The stream then ends at its next token the ordinary way (a generation thread finishes and is
    joined by the stream), so nothing is left running. Off the main thread it does nothing.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._stream: Cancellable | None = None
        self._previous: Any = None
        self._installed = False

    def attach(self, stream: Cancellable) -> None:
        """The stream Ctrl-C stops (stopped at once if Ctrl-C came while it was starting)."""
        self._stream = stream
        if self.pressed:
            stream.cancel()

    def _handle(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        self.pressed = True
        if self._stream is not None:
            self._stream.cancel()

    def __enter__(self) -> CtrlCStops:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


class TypeAhead:
    """Keys typed while an answer streams: not echoed into the answer, and discarded when it ends.

    At a terminal only (termios): echo and line buffering are off while active, Ctrl-C still
    signals; on exit pending input is flushed (TCIFLUSH) and `discarded` says whether there was any.
    SIGTERM or SIGHUP meanwhile exits with status 128+signal through SystemExit, so the terminal is restored.
    """

    def __init__(self, stream: TextIO) -> None:
        self.discarded = False
        self._fd: int | None = None
        self._saved: Any = None
        self._previous_handlers: dict[int, Any] = {}
        try:
            if stream.isatty():
                self._fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def __enter__(self) -> TypeAhead:
        self.discarded = False
        if self._fd is None:
            return self
        import termios

        try:
            self._saved = termios.tcgetattr(self._fd)
            quiet = termios.tcgetattr(self._fd)
            quiet[3] &= ~(termios.ECHO | termios.ICANON)
            termios.tcsetattr(self._fd, termios.TCSANOW, quiet)
        except termios.error:
            self._saved = None
            return self
        self._exit_on_termination()
        return self

    def _exit_on_termination(self) -> None:
        # SIGTERM/SIGHUP's default action kills the process without unwinding, which would leave the
        # user's terminal with echo off; exiting through SystemExit runs __exit__ (and saves history)
        if threading.current_thread() is not threading.main_thread():
            return

        def leave(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
            raise SystemExit(128 + signum)

        self._previous_handlers = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous_handlers.items():
            signal.signal(sig, previous)
        self._previous_handlers = {}
        if self._fd is None or self._saved is None:
            return
        import termios

        try:
            self.discarded = bool(select.select([self._fd], [], [], 0)[0])
            termios.tcflush(self._fd, termios.TCIFLUSH)
        finally:
            termios.tcsetattr(self._fd, termios.TCSANOW, self._saved)
            self._saved = None
