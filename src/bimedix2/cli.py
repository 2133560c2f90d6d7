"""`bimedix2` command line: parse arguments, call the library, print results.

Each command module exposes `register(subparsers)`; add new command groups to
`COMMAND_MODULES`. Heavy imports (torch, transformers) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .errors import BiMediX2Error

COMMAND_MODULES = (
    "bimedix2.commands.chat",
    "bimedix2.commands.model",
    "bimedix2.commands.data",
    "bimedix2.commands.train",
    "bimedix2.commands.serve",
    "bimedix2.commands.eval",
    "bimedix2.commands.export",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="bimedix2",
        description="BiMediX2 toolkit: bilingual (Arabic-English) medical multimodal chat. Research use only.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bimedix2` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except BiMediX2Error as exc:
        print(f"bimedix2: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbimedix2: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
