"""The registry of evaluation kinds: `register_kind` adds one, `get_kind` finds one by its YAML name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ...errors import ConfigError
from .base import EvalKind

K = TypeVar("K", bound=type[EvalKind])

_KINDS: dict[str, EvalKind] = {}


def register_kind(*names: str) -> Callable[[K], K]:
    """Class decorator: one instance of the kind answers to each of `names` (the task YAML's `kind:`)."""
    if not names:
        raise ValueError("register_kind needs at least one kind name")

    def register(cls: K) -> K:
        taken = [n for n in names if n in _KINDS]
        if taken:
            raise ValueError(
                f"evaluation kind {taken[0]!r} is already registered (by {type(_KINDS[taken[0]]).__name__})"
            )
        cls.names = tuple(names)
        kind = cls()
        for name in names:
            _KINDS[name] = kind
        return cls

    return register


def unregister_kind(*names: str) -> None:
    """Remove kinds by name (tests that register a kind of their own clean up with this)."""
    for name in names:
        _KINDS.pop(name, None)


def get_kind(name: str) -> EvalKind:
    """The kind registered as `name`; ConfigError listing the available ones otherwise."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown evaluation kind {name!r}. Available: {', '.join(kind_names())}") from None


def kind_names() -> list[str]:
    """Every registered kind name, sorted."""
    return sorted(_KINDS)


def all_kinds() -> list[EvalKind]:
    """Each registered kind once, in report order (rank, then registration order)."""
    unique = list({id(k): k for k in _KINDS.values()}.values())
    return sorted(unique, key=lambda k: k.rank)
