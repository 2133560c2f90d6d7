"""`bimedix2 chat`: the slash commands, the conversation they act on, and its JSON file format.

Pure: no terminal, no model. `chat.py` reads lines, `parse_command` says what a line asks for,
`Conversation` holds the turns, `/set` edits `GenParams`, `/save` and `/load` go through
`conversation_to_json` / `conversation_from_json`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversation import validate_conversation
from ..errors import BiMediX2Error
from ..types import GenParams, ImageRef, Message

CHAT_FILE_FORMAT = "bimedix2-chat"
CHAT_FILE_VERSION = 1

COMMANDS = (
    "/help",
    "/image",
    "/retry",
    "/reset",
    "/system",
    "/set",
    "/save",
    "/load",
    "/quit",
    "/exit",
)
_ALIASES = {"/exit": "/quit", "/bye": "/quit", "/clear": "/reset", "/?": "/help"}

CHAT_HELP = """Commands:
  /image PATH [PATH ...]   attach image(s) to your next message (Tab completes paths)
  /retry                   answer the last question again (also one you stopped with Ctrl-C)
  /reset                   start a new conversation (keeps /system and /set)
  /system TEXT             set the system prompt; /system alone shows it, /system - removes it
  /set NAME VALUE          temperature, top_p, max_new_tokens, seed (seed none: unseeded);
                           /set alone lists the values in use
  /save FILE               write the conversation as JSON (images by path, never their pixels)
  /load FILE               read a conversation /save wrote (a bad file changes nothing)
  /help                    show this help
  /quit                    leave (Ctrl-D or Ctrl-C at the prompt too)
Input:
  \"\"\"                      start and end a message of several lines
  Up/Down, Ctrl-R          recall earlier lines (readline editing keys work)
  Ctrl-C                   while an answer streams: stop it, back to you> (the stopped answer
                           and its question are left out of the conversation; /retry asks again)
  Keys typed while an answer streams are discarded when it ends: type at the you> prompt.
History: lines you type are kept in {history} (a local text file of your own, readable only by
  you; never images, and never /image lines); --no-history turns it off."""


class ChatCommandError(BiMediX2Error, ValueError):
    """A slash command that cannot be carried out; the chat prints it and goes on unchanged."""


@dataclass(frozen=True)
class Command:
    """A parsed slash command: `name` is canonical ("/quit" for /exit), `arg` the rest of the line."""

    name: str
    arg: str = ""


def parse_command(text: str) -> Command | None:
    """The command on a line, or None for a message. An unknown /word is an error naming the commands."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    word, _, rest = stripped.partition(" ")
    name = _ALIASES.get(word.lower(), word.lower())
    if name not in COMMANDS:
        raise ChatCommandError(f"unknown command {word[:40]!r}; /help lists the commands")
    return Command(name, rest.strip())


# ------------------------------------------------------------------------------------------- /set
SETTINGS = ("temperature", "top_p", "max_new_tokens", "seed")


def _setting_name(word: str) -> str:
    name = word.lower().replace("-", "_")
    if name not in SETTINGS:
        raise ChatCommandError(f"/set: unknown setting {word[:40]!r}. Available: {', '.join(SETTINGS)}")
    return name


def apply_set(params: GenParams, arg: str) -> GenParams:
    """`params` with one setting changed by a `/set NAME VALUE` argument."""
    parts = arg.split()
    if len(parts) != 2:
        raise ChatCommandError(f"usage: /set NAME VALUE, NAME one of {', '.join(SETTINGS)} (/set alone lists them)")
    name, value = _setting_name(parts[0]), parts[1]
    number: float | int | None
    try:
        if name in ("temperature", "top_p"):
            number = float(value)
        else:
            number = None if name == "seed" and value.lower() in ("none", "off", "-") else int(value)
    except ValueError:
        kind = "a whole number" if name in ("max_new_tokens", "seed") else "a number"
        raise ChatCommandError(f"/set {name}: {value[:40]!r} is not {kind}") from None
    if name == "temperature" and not number >= 0:  # also refuses nan
        raise ChatCommandError("/set temperature: must be 0 (greedy) or more")
    if name == "top_p" and not 0 < number <= 1:
        raise ChatCommandError("/set top_p: must be more than 0 and at most 1")
    if name == "max_new_tokens" and number < 1:
        raise ChatCommandError("/set max_new_tokens: must be at least 1")
    return dataclasses.replace(params, **{name: number})


def describe_settings(params: GenParams) -> str:
    """What `/set` alone prints: one `name value` line per setting."""
    lines = []
    for name in SETTINGS:
        value = getattr(params, name)
        shown = "none" if value is None else value
        note = " (greedy)" if name == "temperature" and value == 0 else ""
        lines.append(f"  {name} {shown}{note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- conversation
@dataclass
class Conversation:
    """The chat's state: system prompt, answered turns, images for the next message, the last question.

    `turns` alternate user/assistant and end with an answer. `unanswered` is a question whose
    answer was stopped or failed: it is not part of the conversation, but /retry asks it again.
    """

    system: str | None = None
    turns: list[Message] = field(default_factory=list)
    pending_images: list[ImageRef] = field(default_factory=list)
    unanswered: Message | None = None

    def messages(self, question: Message) -> list[Message]:
        """The messages to generate an answer to `question` from."""
        head = [Message("system", self.system)] if self.system else []
        return [*head, *self.turns, question]

    def question(self, text: str) -> Message:
        """A user message for `text`, carrying the pending images (they are used once it is answered)."""
        return Message("user", text, tuple(self.pending_images))

    def answered(self, question: Message, answer: str) -> None:
        """Add a question and its (complete) answer."""
        self.turns += [question, Message("assistant", answer)]
        self.pending_images = [img for img in self.pending_images if img not in question.images]
        self.unanswered = None

    def stopped(self, question: Message) -> None:
        """The answer to `question` was stopped or failed: keep it only for /retry."""
        self.unanswered = question
        self.pending_images = [img for img in self.pending_images if img not in question.images]

    def retry(self) -> Message:
        """The question /retry asks again; its previous answer (if any) leaves the conversation."""
        if self.unanswered is not None:
            return self.unanswered
        if len(self.turns) >= 2:
            question = self.turns[-2]
            del self.turns[-2:]
            return question
        raise ChatCommandError("/retry: there is no question to answer again yet")

    def reset(self) -> None:
        """Forget the turns and pending images; the system prompt stays."""
        self.turns, self.pending_images, self.unanswered = [], [], None


# ------------------------------------------------------------------------------- /save and /load
def _image_json(ref: ImageRef) -> dict[str, Any]:
    if not isinstance(ref.source, Path):
        raise ChatCommandError("/save: an image given as bytes cannot be saved by path")
    return {"path": str(ref.source.expanduser().resolve()), "window": ref.window, "frame": ref.frame}


def conversation_to_json(conv: Conversation) -> dict[str, Any]:
    """The /save document: system prompt and answered turns (an unanswered question too), images by path."""
    head = [Message("system", conv.system)] if conv.system else []
    tail = [conv.unanswered] if conv.unanswered is not None else []
    rows = []
    for msg in [*head, *conv.turns, *tail]:
        row: dict[str, Any] = {"role": msg.role, "content": msg.content}
        if msg.images:
            row["images"] = [_image_json(ref) for ref in msg.images]
        rows.append(row)
    return {"format": CHAT_FILE_FORMAT, "version": CHAT_FILE_VERSION, "messages": rows}


def _bad(path: Path, where: str, problem: str) -> ChatCommandError:
    return ChatCommandError(f"/load {path}: {where}{problem}; nothing was changed")


def _image_from_json(raw: Any, path: Path, where: str) -> ImageRef:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
        raise _bad(path, where, 'an image must be {"path": "...", "window": ..., "frame": ...}')
    unknown = set(raw) - {"path", "window", "frame"}
    if unknown:
        raise _bad(path, where, f"unknown image key(s) {', '.join(sorted(unknown))}")
    window, frame = raw.get("window"), raw.get("frame")
    if window is not None and not isinstance(window, str):
        raise _bad(path, where, "an image's window must be a string or null")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise _bad(path, where, "an image's frame must be a whole number >= 0 or null")
    image_path = Path(raw["path"]).expanduser()
    if not image_path.is_absolute():
        image_path = path.parent / image_path  # relative to the saved file
    if not image_path.is_file():
        raise _bad(path, where, f"image {image_path} not found")
    return ImageRef(image_path, window=window, frame=frame)


def conversation_from_json(doc: Any, path: Path) -> Conversation:
    """The Conversation a /save document describes; a clear error (naming `path`) for anything wrong."""
    if not isinstance(doc, dict) or doc.get("format") != CHAT_FILE_FORMAT:
        raise _bad(path, "", f'not a saved chat (expected a JSON object with "format": "{CHAT_FILE_FORMAT}")')
    if doc.get("version") != CHAT_FILE_VERSION:
        raise _bad(path, "", f"version {doc.get('version')!r} is not supported (this toolkit reads version 1)")
    rows = doc.get("messages")
    if not isinstance(rows, list):
        raise _bad(path, "", '"messages" must be a list')
    messages = []
    for i, row in enumerate(rows):
        where = f"message {i}: "
        if not isinstance(row, dict):
            raise _bad(path, where, "must be an object")
        unknown = set(row) - {"role", "content", "images"}
        if unknown:
            raise _bad(path, where, f"unknown key(s) {', '.join(sorted(unknown))}")
        role, content = row.get("role"), row.get("content")
        if role not in ("system", "user", "assistant"):
            raise _bad(path, where, f"role must be system, user or assistant, got {role!r}")
        if not isinstance(content, str):
            raise _bad(path, where, "content must be a string")
        images = row.get("images", [])
        if not isinstance(images, list):
            raise _bad(path, where, '"images" must be a list')
        messages.append(Message(role, content, tuple(_image_from_json(img, path, where) for img in images)))
    if messages:
        try:
            validate_conversation(messages, for_generation=False)
        except BiMediX2Error as exc:
            raise _bad(path, "", str(exc)) from None
    conv = Conversation()
    if messages and messages[0].role == "system":
        conv.system = messages.pop(0).content or None
    if messages and messages[-1].role == "user":
        conv.unanswered = messages.pop()
    conv.turns = messages
    return conv
