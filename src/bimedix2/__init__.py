"""BiMediX2 toolkit: bilingual (Arabic-English) medical multimodal chat.

Research use only; not for clinical use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .types import RESEARCH_NOTICE, GenParams, ImageRef, Message, Reply

__version__ = "0.1.0"
__all__ = ["RESEARCH_NOTICE", "Engine", "GenParams", "ImageRef", "LoadOptions", "Message", "Reply", "load_model"]

if TYPE_CHECKING:
    from .engine import Engine
    from .model.loader import LoadOptions, load_model


def __getattr__(name: str) -> Any:
    # torch and transformers load only when a model is asked for, so `bimedix2 --help` is instant.
    if name in ("load_model", "LoadOptions"):
        from .model import loader

        return getattr(loader, name)
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(name)
