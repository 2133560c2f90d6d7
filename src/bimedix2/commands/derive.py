"""Command-line options derived from typed config dataclasses, so no command copies a default by hand.

A config dataclass is the single source of truth for a command's options: its field types
give the argparse types and choices, its defaults the help text, and per-field metadata
(`opt(...)`) the help, flag spelling and aliases. Parsing gives back the same frozen
dataclass that `config.load_config` builds from YAML, checked by the same converter:

    @dataclass(frozen=True)
    class ServeOptions:
        port: int = field(default=8000, metadata=opt("port to bind"))

    add_dataclass_options(parser.add_argument_group("serving"), ServeOptions)
    cfg = dataclass_from_args(ServeOptions, args, base=load_yaml(args.config) if args.config else {})

Precedence: a flag given on the command line > `base` (a YAML file's mapping) > the field's default.
argparse itself does parsing; this module only maps dataclass fields to `add_argument` calls,
because argparse has no notion of dataclasses and jsonargparse would change every flag's spelling.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

from ..config import from_dict

T = TypeVar("T")

__all__ = ["add_dataclass_options", "dataclass_from_args", "opt"]


def opt(
    help: str, *, flag: str | None = None, aliases: Sequence[str] = (), metavar: str | None = None
) -> dict[str, Any]:
    """Field metadata for the CLI: help text, an optional flag spelling (default `--field-name`) and aliases."""
    return {"cli": {"help": help, "flag": flag, "aliases": tuple(aliases), "metavar": metavar}}


def _flag(field: dataclasses.Field) -> str:
    meta = field.metadata.get("cli", {})
    return meta.get("flag") or "--" + field.name.replace("_", "-")


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _scalar_type(tp: Any) -> Any:
    """The argparse `type=` for a scalar field type (strings are converted later by `from_dict`)."""
    if tp in (int, float, Path):
        return tp
    return str


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)) and not value:
        return "none"
    return str(value)


def add_dataclass_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    schema: type,
    *,
    exclude: Sequence[str] = (),
) -> list[str]:
    """Add one option per (non-nested) field of `schema`; returns the field names added.

    bool -> `--x/--no-x`; Literal -> choices; tuple/list -> repeatable; Optional -> may be omitted.
    Defaults are not set on the parser (argparse.SUPPRESS), so `dataclass_from_args` can tell a
    flag the user gave from one left out, and the dataclass stays the only place a default lives.
    """
    hints = typing.get_type_hints(schema)
    added = []
    for field in dataclasses.fields(schema):
        if not field.init or field.name in exclude or "cli" not in field.metadata:
            continue
        tp, _ = _strip_optional(hints[field.name])
        meta = field.metadata["cli"]
        names = [_flag(field), *meta["aliases"]]
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": argparse.SUPPRESS,
            "help": f"{meta['help']} (default: {_default_text(field)})",
        }
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            raise TypeError(f"{schema.__name__}.{field.name}: nested configs are set with --set, not a flag")
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs.pop("metavar", None)
        elif origin is typing.Literal:
            kwargs["choices"] = [str(a) for a in typing.get_args(tp)]
        elif origin in (tuple, list) or tp in (tuple, list):
            item = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs.update(action="append", type=_scalar_type(_strip_optional(item)[0]))
        else:
            kwargs["type"] = _scalar_type(tp)
        parser.add_argument(*names, **kwargs)
        added.append(field.name)
    return added


def dataclass_from_args(
    schema: type[T],
    args: argparse.Namespace,
    *,
    base: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> T:
    """Build `schema` from `base` (e.g. a YAML mapping), then the flags given in `args`, then `extra`.

    Values go through `config.from_dict`, so a bad value gets the same `ConfigError` naming the
    field as it would in a YAML file.
    """
    data: dict[str, Any] = dict(base or {})
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        if "cli" in field.metadata and hasattr(args, field.name):
            value = getattr(args, field.name)
            tp, _ = _strip_optional(hints[field.name])
            if typing.get_origin(tp) is typing.Literal and value is not None:
                value = _literal_value(tp, value)
            data[field.name] = list(value) if isinstance(value, tuple) else value
    data.update(extra or {})
    return from_dict(schema, data)


def _literal_value(tp: Any, text: Any) -> Any:
    """argparse gives choices as strings; map back to the Literal's own value (e.g. an int)."""
    for choice in typing.get_args(tp):
        if str(choice) == str(text):
            return choice
    return text
