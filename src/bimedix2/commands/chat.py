"""`bimedix2 ask` (one question) and `bimedix2 chat` (interactive, multi-turn)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..errors import BiMediX2Error
from ..types import RESEARCH_NOTICE, ImageRef, Message
from .options import add_engine_options, add_generation_options, add_image_options, add_model_options, gen_params

CHAT_HELP = """Commands:
  /image PATH [PATH ...]  attach image(s) to your next message
  /reset                  start a new conversation
  /help                   show this help
  /quit                   leave (Ctrl-D works too)"""


def register(subparsers: argparse._SubParsersAction) -> None:
    ask = subparsers.add_parser("ask", help="ask one question (optionally about images); streams the answer")
    add_model_options(ask)
    add_engine_options(ask)
    add_generation_options(ask)
    add_image_options(ask)
    ask.add_argument("--image", "-i", action="append", default=[], type=Path, help="image file (repeatable)")
    ask.add_argument("question", help="the question, in English or Arabic")
    ask.set_defaults(func=run_ask)

    chat = subparsers.add_parser("chat", help="interactive multi-turn chat; /image attaches images")
    add_model_options(chat)
    add_engine_options(chat)
    add_generation_options(chat)
    add_image_options(chat)
    chat.set_defaults(func=run_chat)


def _engine(args: argparse.Namespace):  # noqa: ANN202
    from .options import build_engine

    return build_engine(args)


def _stream_reply(engine, messages: list[Message], args: argparse.Namespace, out: TextIO) -> str:  # noqa: ANN001
    stream = engine.stream(messages, gen_params(args))
    for piece in stream:
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    print(f"[{RESEARCH_NOTICE}]", file=sys.stderr)
    return stream.reply.text


def run_ask(args: argparse.Namespace) -> int:
    if not args.question.strip():
        raise SystemExit("bimedix2: error: the question is empty")
    engine = _engine(args)
    images = tuple(ImageRef(path, window=args.window, frame=args.frame) for path in args.image)
    _stream_reply(engine, [Message("user", args.question, images)], args, sys.stdout)
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from ..images import load_image

    engine = _engine(args)
    print(f"bimedix2 chat with {engine.loaded.info.name}. /help for commands. {RESEARCH_NOTICE}", file=sys.stderr)
    history: list[Message] = []
    pending: list[ImageRef] = []
    while True:
        try:
            line = input("you> " if sys.stdin.isatty() else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/help":
            print(CHAT_HELP, file=sys.stderr)
            continue
        if text == "/reset":
            history, pending = [], []
            print("(conversation cleared)", file=sys.stderr)
            continue
        if text.startswith("/image"):
            paths = text.split()[1:]
            if not paths:
                print("usage: /image PATH [PATH ...]", file=sys.stderr)
                continue
            if not engine.loaded.has_vision:
                from ..engine import NO_VISION_HINT

                print(f"error: {NO_VISION_HINT.format(name=engine.loaded.info.name)}", file=sys.stderr)
                continue
            try:
                refs = [ImageRef(Path(p), window=args.window, frame=args.frame) for p in paths]
                for ref in refs:
                    load_image(ref, engine.limits)  # fail now, not after the question is typed
            except BiMediX2Error as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
            pending.extend(refs)
            print(f"({len(pending)} image(s) attached to your next message)", file=sys.stderr)
            continue
        message = Message("user", text, tuple(pending))
        try:
            answer = _stream_reply(engine, [*history, message], args, sys.stdout)
        except BiMediX2Error as exc:  # the conversation so far is kept
            print(f"error: {exc}", file=sys.stderr)
            continue
        history += [message, Message("assistant", answer)]
        pending = []
    return 0
