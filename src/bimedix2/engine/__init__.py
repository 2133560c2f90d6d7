"""Generation: prompt building, image-token contract, batching, streaming, stop handling.

`Engine` is the one user-facing class; it runs on a `GenerationBackend` chosen by name from
`BACKENDS` (built in: "transformers", "llama-cpp"). Adding a backend is one module with a class taking a
`LoadedModel` and one `@register_backend("name")` line.
"""

from .backend import (
    BACKENDS,
    BackendFactory,
    GenerationBackend,
    PreparedBatch,
    Sampling,
    StepFn,
    get_backend,
    register_backend,
    template_stop_ids,
)
from .core import NO_VISION_HINT, Engine
from .llama_cpp_backend import LlamaCppBackend
from .streams import BatchStream, IncrementalDetokenizer, Row, RowStream, TextStream
from .transformers_backend import TransformersBackend, merge_prepared

__all__ = [
    "BACKENDS",
    "NO_VISION_HINT",
    "BackendFactory",
    "BatchStream",
    "Engine",
    "GenerationBackend",
    "IncrementalDetokenizer",
    "LlamaCppBackend",
    "PreparedBatch",
    "Row",
    "RowStream",
    "Sampling",
    "StepFn",
    "TextStream",
    "TransformersBackend",
    "get_backend",
    "merge_prepared",
    "register_backend",
    "template_stop_ids",
]
