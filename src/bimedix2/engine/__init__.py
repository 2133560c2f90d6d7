"""Generation: prompt building, image-token contract, batching, streaming, stop handling.

`Engine` is the one user-facing class; it runs on a `GenerationBackend` chosen by name from
`BACKENDS` (built in: "transformers", "llama-cpp"). Adding a backend is one module with a class taking a
`LoadedModel` and one `@register_backend("name")` line; a backend that also has `steps` (a
`ResumableBackend`) streams a single reply on the reading thread.
"""

from .backend import (
    BACKENDS,
    BackendFactory,
    GenerationBackend,
    PreparedBatch,
    ResumableBackend,
    Sampling,
    StepFn,
    Steps,
    drive,
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
    "register_backend",
    "template_stop_ids",
]
