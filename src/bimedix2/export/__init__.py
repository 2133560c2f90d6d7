"""GGUF export for llama.cpp, Ollama and LM Studio (`bimedix2 export gguf`), and reading GGUF files back.

The public surface:

- `export_gguf(src, out_dir, quant, ...)`: checkpoint -> language-model GGUF (+ `mmproj` GGUF for
  vision models), Ollama Modelfile, LM Studio folder, README.txt and export.json.
- `read_gguf_info(path)`, `require_chat_template(model)`, `check_mmproj_matches(model, mmproj)`:
  what a GGUF says, and the checks a llama.cpp engine backend runs before loading a pair.

This layer sits beside the engine: it uses the model loader, the conversation templates and
fileio, and imports nothing of training, evaluation or serving.
"""

from __future__ import annotations

from .common import DEFAULT_QUANT, QUANT_TYPES, QUANTIZED_TYPES, ExportError
from .info import GgufInfo, check_mmproj_matches, read_gguf_info, require_chat_template
from .pipeline import ExportResult, export_gguf

__all__ = [
    "DEFAULT_QUANT",
    "QUANTIZED_TYPES",
    "QUANT_TYPES",
    "ExportError",
    "ExportResult",
    "GgufInfo",
    "check_mmproj_matches",
    "export_gguf",
    "read_gguf_info",
    "require_chat_template",
]
