"""`bimedix2 ask` (one question) and `bimedix2 chat` (interactive, multi-turn).

The chat's parts: `chat_commands` (slash commands, the conversation, its JSON file),
`chat_terminal` (readline, history, multi-line input, Ctrl-C and typed-ahead keys while an
answer streams), `chat_render` (Markdown at a terminal). Every answer is streamed by
`stream_answer`, which always ends the generation run before it returns (Ctrl-C included), so
no generation thread is left running at exit on either engine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..conversation import detect_language
from ..errors import BiMediX2Error
from ..types import RESEARCH_NOTICE, GenParams, ImageRef, Message
from .chat_commands import (
    CHAT_HELP,
    COMMANDS,
    ChatCommandError,
    Command,
    Conversation,
    apply_set,
    conversation_from_json,
    conversation_to_json,
    describe_settings,
    parse_command,
)
from .chat_render import MarkdownRenderer
from .chat_terminal import BlockReader, CtrlCStops, History, Terminal, TypeAhead, history_path
from .options import add_engine_options, add_generation_options, add_image_options, add_model_options, gen_params

if TYPE_CHECKING:
    from ..engine import Engine

ARABIC_ON_EMBEDDED_NOTE = (
    "bimedix2: note: the embedded default model (SmolLM2-135M-Instruct) is English-only and answers "
    "Arabic poorly. For Arabic, load BiMediX2: --model MBZUAI/BiMediX2-8B-hf, or a GGUF export "
    "(bimedix2 export gguf) with --mmproj."
)
STEER_IGNORED_NOTE = (
    "bimedix2: note: --steer-language is ignored for the embedded default model: it is English-only, "
    "and telling it to answer in Arabic only makes its answers worse."
)
TYPE_AHEAD_NOTE = "(keys typed while the answer streamed were discarded: type your next message at the you> prompt)"
STOPPED_NOTE = "(stopped; this answer and its question are left out of the conversation: /retry asks again)"


def register(subparsers: argparse._SubParsersAction) -> None:
    ask = subparsers.add_parser("ask", help="ask one question (optionally about images); streams the answer")
    add_model_options(ask)
    add_engine_options(ask)
    add_generation_options(ask)
    add_image_options(ask)
    ask.add_argument("--image", "-i", action="append", default=[], type=Path, help="image file (repeatable)")
    ask.add_argument("question", help="the question, in English or Arabic")
    ask.set_defaults(func=run_ask)

    chat = subparsers.add_parser(
        "chat", help="interactive multi-turn chat (line editing, history, /image, /save, /load; /help lists all)"
    )
    add_model_options(chat)
    add_engine_options(chat)
    add_generation_options(chat)
    add_image_options(chat)
    group = chat.add_argument_group("terminal")
    group.add_argument(
        "--no-history",
        action="store_true",
        help=f"do not read or write the history of typed lines ({history_path()})",
    )
    group.add_argument("--plain", action="store_true", help="print answers as plain text, not rendered Markdown")
    chat.set_defaults(func=run_chat)


def _engine(args: argparse.Namespace) -> Engine:
    from .options import build_engine

    return build_engine(args)


def is_embedded_default(args: argparse.Namespace, engine: Engine) -> bool:
    """Whether the loaded model is the embedded English-only SmolLM2 (either engine)."""
    from ..model.loader import EMBEDDED_DEFAULT_NAME, embedded_default_gguf

    if args.model is None or engine.loaded.info.name == EMBEDDED_DEFAULT_NAME:
        return True
    try:
        return Path(args.model).expanduser().resolve() == embedded_default_gguf().resolve()
    except (BiMediX2Error, OSError):
        return False


def _params(args: argparse.Namespace, embedded: bool) -> GenParams:
    params = gen_params(args)
    if embedded and params.steer_language:
        print(STEER_IGNORED_NOTE, file=sys.stderr)
        params = dataclasses.replace(params, steer_language=False)
    return params


@dataclass(frozen=True)
class Answer:
    """A streamed answer: its text (what was shown) and whether Ctrl-C stopped it."""

    text: str
    stopped: bool


def stream_answer(
    engine: Engine,
    messages: list[Message],
    params: GenParams,
    out: TextIO,
    *,
    type_ahead: TypeAhead | None = None,
    renderer: MarkdownRenderer | None = None,
) -> Answer:
    """Stream one answer to `out`; Ctrl-C stops it. The generation run has ended when this returns or raises."""
    ctrl_c = CtrlCStops()
    with ctrl_c, type_ahead if type_ahead is not None else contextlib.nullcontext():
        stream = engine.stream(messages, params)
        ctrl_c.attach(stream)
        pieces = iter(stream)
        shown: list[str] = []
        try:
            for piece in pieces:
                out.write(piece)
                out.flush()
                shown.append(piece)
        except BaseException:
            # Writing failed (a closed pipe...): end the run before leaving. An error the stream
            # itself raises comes after its run ended, and then this loop has nothing to read.
            stream.cancel()
            with contextlib.suppress(Exception):
                for _ in pieces:
                    pass
            raise
        out.write("\n")
        out.flush()
    text = stream.reply.text if stream.reply is not None else "".join(shown)
    if renderer is not None and not ctrl_c.pressed:
        renderer.rerender(text)
    return Answer(text, ctrl_c.pressed)


def run_ask(args: argparse.Namespace) -> int:
    if not args.question.strip():
        raise SystemExit("bimedix2: error: the question is empty")
    engine = _engine(args)
    embedded = is_embedded_default(args, engine)
    params = _params(args, embedded)
    if embedded and detect_language(args.question) == "ar":
        print(ARABIC_ON_EMBEDDED_NOTE, file=sys.stderr)
    images = tuple(ImageRef(path, window=args.window, frame=args.frame) for path in args.image)
    answer = stream_answer(engine, [Message("user", args.question, images)], params, sys.stdout)
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    if answer.stopped:
        raise KeyboardInterrupt  # the CLI says "interrupted" and exits 130; the run has ended
    return 0


def run_chat(args: argparse.Namespace) -> int:
    engine = _engine(args)
    return ChatSession(args, engine).run()


class ChatSession:
    """One `bimedix2 chat`: reads lines, runs commands, streams answers."""

    def __init__(self, args: argparse.Namespace, engine: Engine) -> None:
        from ..model.loader import EMBEDDED_DEFAULT_NAME

        self.args = args
        self.engine = engine
        self.embedded = is_embedded_default(args, engine)
        self.name = EMBEDDED_DEFAULT_NAME if self.embedded else engine.loaded.info.name
        self.params = _params(args, self.embedded)
        self.interactive = sys.stdin.isatty()
        self.history_file = None if args.no_history or not self.interactive else history_path()
        self.terminal = Terminal(History(self.history_file), COMMANDS, interactive=self.interactive)
        self.conv = Conversation()
        self.blocks = BlockReader()
        self.type_ahead = TypeAhead(sys.stdin) if self.interactive else None
        self.renderer = MarkdownRenderer(sys.stdout, enabled=not args.plain)
        self.noted: set[str] = set()

    def note_once(self, message: str) -> None:
        if message not in self.noted:
            self.noted.add(message)
            print(message, file=sys.stderr)

    def run(self) -> int:
        print(f"bimedix2 chat with {self.name}. /help for commands. {RESEARCH_NOTICE}", file=sys.stderr)
        while True:
            try:
                line = self.terminal.read("... " if self.blocks.active else "you> ")
            except EOFError:  # Ctrl-D, or the end of piped input
                if self.interactive:
                    print(file=sys.stderr)
                return 0
            except KeyboardInterrupt:  # Ctrl-C at the prompt: leave; inside a block: drop the block
                print(file=sys.stderr)
                if self.blocks.active:
                    self.blocks.cancel()
                    print("(multi-line message discarded)", file=sys.stderr)
                    continue
                return 0
            was_block = self.blocks.active or line.lstrip().startswith('"""')
            text = self.blocks.feed(line)
            if text is None:
                continue
            if was_block:
                self.terminal.remember(f'"""{text}"""')
                if text.strip():
                    self.ask(self.conv.question(text))
                continue
            if not text.strip():
                continue
            self.terminal.remember(text.strip())
            try:
                command = parse_command(text)
                if command is None:
                    self.ask(self.conv.question(text.strip()))
                elif command.name == "/quit":
                    return 0
                else:
                    self.do(command)
            except ChatCommandError as exc:
                print(f"error: {exc}", file=sys.stderr)
            except KeyboardInterrupt:  # Ctrl-C outside an answer (loading a file...): back to the prompt
                print("\n(interrupted)", file=sys.stderr)

    # -------------------------------------------------------------------------------- answering
    def ask(self, question: Message) -> None:
        if self.embedded and detect_language(question.content) == "ar":
            self.note_once(ARABIC_ON_EMBEDDED_NOTE)
        messages = self.conv.messages(question)
        try:
            answer = stream_answer(
                self.engine, messages, self.params, sys.stdout, type_ahead=self.type_ahead, renderer=self.renderer
            )
        except BiMediX2Error as exc:  # the conversation so far is kept
            self.conv.stopped(question)
            print(f"error: {exc}", file=sys.stderr)
            return
        finally:
            if self.type_ahead is not None and self.type_ahead.discarded:
                self.note_once(TYPE_AHEAD_NOTE)
        if answer.stopped:
            self.conv.stopped(question)
            print(STOPPED_NOTE, file=sys.stderr)
        elif not answer.text.strip():  # an empty assistant turn would make the conversation invalid
            self.conv.stopped(question)
            print("(the answer is empty; it is left out of the conversation: /retry asks again)", file=sys.stderr)
        else:
            self.conv.answered(question, answer.text)
        print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)

    # --------------------------------------------------------------------------------- commands
    def do(self, command: Command) -> None:
        handler = {
            "/help": self.help,
            "/reset": self.reset,
            "/image": self.image,
            "/retry": self.retry,
            "/system": self.system,
            "/set": self.set,
            "/save": self.save,
            "/load": self.load,
        }[command.name]
        handler(command.arg)

    def help(self, _arg: str) -> None:
        where = str(self.history_file) if self.history_file is not None else "memory only (this session)"
        print(CHAT_HELP.format(history=where), file=sys.stderr)

    def reset(self, _arg: str) -> None:
        self.conv.reset()
        print("(conversation cleared)", file=sys.stderr)

    def retry(self, _arg: str) -> None:
        self.ask(self.conv.retry())

    def system(self, arg: str) -> None:
        if not arg:
            shown = self.conv.system if self.conv.system else "(none: the model's own default)"
            print(f"system prompt: {shown}", file=sys.stderr)
        elif arg == "-":
            self.conv.system = None
            print("(system prompt removed)", file=sys.stderr)
        else:
            self.conv.system = arg
            print("(system prompt set; it applies from the next answer)", file=sys.stderr)

    def set(self, arg: str) -> None:
        if arg:
            self.params = apply_set(self.params, arg)
        print(describe_settings(self.params), file=sys.stderr)

    def save(self, arg: str) -> None:
        from ..fileio import atomic_write_json

        if not arg:
            raise ChatCommandError("usage: /save FILE")
        path = Path(arg).expanduser()
        doc = conversation_to_json(self.conv)
        try:
            atomic_write_json(path, doc)
        except OSError as exc:
            raise ChatCommandError(f"/save {path}: {exc.strerror or exc}") from None
        print(f"(saved {len(doc['messages'])} message(s) to {path})", file=sys.stderr)

    def load(self, arg: str) -> None:
        from ..engine import NO_VISION_HINT
        from ..fileio import read_json

        if not arg:
            raise ChatCommandError("usage: /load FILE")
        path = Path(arg).expanduser()
        try:
            doc = read_json(path, ChatCommandError)
        except ChatCommandError as exc:
            raise ChatCommandError(f"/load {exc}; nothing was changed") from None
        conv = conversation_from_json(doc, path)
        turns = [*conv.turns, *([conv.unanswered] if conv.unanswered else [])]
        if any(m.images for m in turns) and not self.engine.loaded.has_vision:
            hint = NO_VISION_HINT.format(name=self.name)
            raise ChatCommandError(f"/load {path}: the conversation has images. {hint} Nothing was changed.")
        self.conv = conv
        print(f"(loaded {len(conv.turns)} message(s) from {path})", file=sys.stderr)
        if conv.unanswered is not None:
            print("(its last question has no answer: /retry answers it)", file=sys.stderr)

    def image(self, arg: str) -> None:
        from ..images import load_image

        paths = arg.split()
        if not paths:
            raise ChatCommandError("usage: /image PATH [PATH ...]")
        if not self.engine.loaded.has_vision:
            from ..engine import NO_VISION_HINT

            raise ChatCommandError(NO_VISION_HINT.format(name=self.name))
        refs = [ImageRef(Path(p).expanduser(), window=self.args.window, frame=self.args.frame) for p in paths]
        try:
            for ref in refs:
                load_image(ref, self.engine.limits)  # fail now, not after the question is typed
        except BiMediX2Error as exc:
            raise ChatCommandError(str(exc)) from None
        self.conv.pending_images.extend(refs)
        print(f"({len(self.conv.pending_images)} image(s) attached to your next message)", file=sys.stderr)
