"""Typed configs: frozen dataclasses loaded from YAML, with dotted command-line overrides.

Generic: any (nested) dataclass works as a schema. Values are checked against the field
types (int, float, str, bool, Path, Literal, Optional/unions, tuple/list, dict, nested
dataclasses); unknown keys, wrong types and failed `validate()` hooks raise `ConfigError`
naming the dotted field, e.g. ``train.lr: expected a number, got 'fast'``.

    cfg = load_config("configs/train/stage2-tiny.yaml", TrainConfig, ["train.lr=1e-4", "lora.r=16"])
    save_config(cfg, out_dir / "config.yaml")   # the resolved config, re-loadable with load_config

A dataclass may define ``validate(self) -> None`` raising `ConfigError` for cross-field checks;
it is called after the whole tree is built (children first).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from .errors import ConfigError
from .fileio import atomic_write_text

T = TypeVar("T")

__all__ = ["apply_overrides", "config_to_dict", "from_dict", "load_config", "load_yaml", "save_config"]


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; `ConfigError` naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields, got {type(data).__name__}")
    return data


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested mapping (values parsed as YAML scalars/lists).

    Returns a new mapping; intermediate mappings are created when missing (the schema check
    later rejects names that do not exist).
    """
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected FIELD.PATH=VALUE, e.g. train.lr=1e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        node = out
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: depth + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_config(path: str | Path, schema: type[T], overrides: Sequence[str] = ()) -> T:
    """Load a YAML file into the dataclass `schema`, applying dotted overrides, then validate."""
    data = apply_overrides(load_yaml(path), overrides)
    try:
        return from_dict(schema, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def from_dict(schema: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build the dataclass `schema` from a mapping, checking every value's type."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of fields, got {_kind(data)}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = _join(prefix, str(unknown[0]))
        raise ConfigError(f"{name}: unknown field (known here: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        dotted = _join(prefix, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], dotted)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{dotted}: required field is missing")
    try:
        obj = schema(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{prefix}.{exc}" if prefix and not str(exc).startswith(prefix) else str(exc)) from None
    return obj


def config_to_dict(obj: Any) -> Any:
    """A plain YAML-safe structure (dicts, lists, scalars, paths as strings) of a config tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_config(obj: Any, path: str | Path) -> Path:
    """Write a config tree as YAML (the resolved config, loadable again with `load_config`)."""
    return atomic_write_text(path, yaml.safe_dump(config_to_dict(obj), sort_keys=False, allow_unicode=True))


# --------------------------------------------------------------------------------- conversion
def _convert(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{name}: must not be null")
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, name)
            except ConfigError as exc:
                errors.append(str(exc).removeprefix(f"{name}: "))
        raise ConfigError(f"{name}: {' / '.join(errors)}")
    if value is None:
        raise ConfigError(f"{name}: must not be null")
    if origin is typing.Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(f"{name}: must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=name)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {_kind(value)}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{name}: expected {len(args)} items, got {len(value)}")
            items = [_convert(a, v, f"{name}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(item_tp, v, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {_kind(value)}")
        key_tp, val_tp = args if args else (Any, Any)
        return {_convert(key_tp, k, name): _convert(val_tp, v, f"{name}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true or false, got {_kind(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name}: expected an integer, got {_kind(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected a number, got {_kind(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected a string, got {_kind(value)}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{name}: expected a path, got {_kind(value)}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{name}: unsupported value {_kind(value)} for type {tp!r}")


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}
