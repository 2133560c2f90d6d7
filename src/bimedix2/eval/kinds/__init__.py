"""Evaluation kinds: one module per kind, each registered with `@register_kind(NAME)`.

A task YAML's `kind:` names one of them; `get_kind(name)` finds it (an unknown name lists the
available ones). See `base.EvalKind` for what a kind supplies.
"""

from . import mbench, mcq, text, uphill, vqa
from .base import EvalKind, GenerationKind, TaskRun
from .registry import all_kinds, get_kind, kind_names, register_kind, unregister_kind

__all__ = [
    "EvalKind",
    "GenerationKind",
    "TaskRun",
    "all_kinds",
    "get_kind",
    "kind_names",
    "mbench",
    "mcq",
    "register_kind",
    "text",
    "unregister_kind",
    "uphill",
    "vqa",
]
