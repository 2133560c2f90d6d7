"""Generation: prompt building, image-token contract, batching, streaming, stop handling.

`Engine` is the one user-facing class; it runs on a `GenerationBackend` chosen by name from
`BACKENDS` (built in: "transformers", "llama-cpp"). Adding a backend is one module with a class taking a
`LoadedModel` and one `@register_backend("name")` line; a backend that also has `steps` (a
`ResumableBackend`) streams a single reply on the reading thread; one that can admit a request between
decoding steps (a `ContinuousBackend`, as llama.cpp's parallel sequences are) gets continuous batching
through `Engine.continuous()` (`ContinuousBatch`).
"""

from typing import Any

from .backend import (
    BACKENDS,
    BUILTIN_BACKENDS,
    BackendFactory,
    ContinuousBackend,
    GenerationBackend,
    PreparedBatch,
    ResumableBackend,
    Sampling,
    StepFn,
    Steps,
    drive,
    get_backend,
    observe_steps,
    register_backend,
    template_stop_ids,
)
from .continuous import ContinuousBatch
from .core import NO_VISION_HINT, Engine
from .streams import BatchStream, IncrementalDetokenizer, Row, RowStream, TextStream

_LAZY = {  # imported on first use: the transformers backend imports torch, the llama.cpp one does not
    "TransformersBackend": "transformers_backend",
    "merge_prepared": "transformers_backend",
    "LlamaCppBackend": "llama_cpp_backend",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "BUILTIN_BACKENDS",
    "NO_VISION_HINT",
    "BackendFactory",
    "BatchStream",
    "ContinuousBackend",
    "ContinuousBatch",
    "Engine",
    "GenerationBackend",
    "IncrementalDetokenizer",
    "LlamaCppBackend",
    "PreparedBatch",
    "ResumableBackend",
    "Row",
    "RowStream",
    "Sampling",
    "StepFn",
    "Steps",
    "TextStream",
    "TransformersBackend",
    "drive",
    "get_backend",
    "merge_prepared",
    "observe_steps",
    "register_backend",
    "template_stop_ids",
]
