"""The files beside the GGUFs: an Ollama Modelfile, and a README carrying the research-use notice.

The Modelfile's TEMPLATE is BiMediX2's prompt (`bimedix2.conversation.BIMEDIX2_LLAMA3_TEMPLATE`)
in Ollama's Go-template syntax: the same two BOS tokens, system turn (the released system prompt
unless one is given), Llama-3 headers and `<|eot_id|>` after every turn. Ollama puts a message's
images at the start of its text itself, where BiMediX2's template puts `<image>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..conversation import BIMEDIX2_SYSTEM_PROMPT
from ..types import RESEARCH_NOTICE, RESEARCH_NOTICE_AR

BOS = "<|begin_of_text|>"

# Go-template twin of BIMEDIX2_LLAMA3_TEMPLATE; `{{-` trims only the newlines this file adds for reading.
BIMEDIX2_OLLAMA_TEMPLATE = (
    BOS + BOS + "<|start_header_id|>system<|end_header_id|>\n\n"
    "{{ if .System }}{{ .System }}{{ else }}" + BIMEDIX2_SYSTEM_PROMPT + "{{ end }}<|eot_id|>\n"
    "{{- range .Messages }}\n"
    '{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
    "{{ .Content }}<|eot_id|>\n"
    "{{- end }}\n"
    "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)

# BiMediX2's released decoding (temperature 0.1, top_p 1.0, up to 1024 new tokens, stop on <|eot_id|>).
RELEASED_PARAMETERS = (("stop", '"<|eot_id|>"'), ("temperature", "0.1"), ("top_p", "1.0"), ("num_predict", "1024"))


@dataclass(frozen=True)
class ExportedFiles:
    """Paths, relative to the export directory, of the files the Modelfile and README name."""

    model: str
    mmproj: str | None
    lmstudio_dir: str
    template_name: str
    stop_tokens: tuple[str, ...]


def _stop_lines(stops: tuple[str, ...]) -> list[str]:
    return [f'PARAMETER stop "{stop}"' for stop in stops]


def modelfile_text(files: ExportedFiles) -> str:
    """An Ollama Modelfile: model (and projector) FROM lines, template, released decoding, notice."""
    lines = [
        "# Ollama Modelfile written by `bimedix2 export gguf`.",
        f"# {RESEARCH_NOTICE}",
        "# Create and run:  ollama create bimedix2 -f Modelfile  &&  ollama run bimedix2",
        f"FROM ./{files.model}",
    ]
    if files.mmproj:
        lines.append(f"FROM ./{files.mmproj}")  # Ollama recognises the projector by its `clip` architecture
    if files.template_name == "bimedix2-llama3":
        lines.append(f'TEMPLATE """{BIMEDIX2_OLLAMA_TEMPLATE}"""')
        stops: tuple[str, ...] = ("<|eot_id|>",)
    else:
        lines.append(
            f"# chat template {files.template_name!r}: Ollama derives its template from the GGUF's chat template"
        )
        stops = files.stop_tokens
    lines += _stop_lines(stops)
    lines += [f"PARAMETER {key} {value}" for key, value in RELEASED_PARAMETERS if key != "stop"]
    return "\n".join(lines) + "\n"


def readme_text(files: ExportedFiles, *, source: str, quant: str) -> str:
    """README.txt: the notice (English and Arabic), what each file is, and how to run it."""
    mmproj = f"  {files.mmproj}\n      vision encoder + projector (llama.cpp mmproj)\n" if files.mmproj else ""
    run = f"llama-mtmd-cli -m {files.model} --mmproj {files.mmproj}" if files.mmproj else f"llama-cli -m {files.model}"
    bos = (
        "The prompt starts with two <|begin_of_text|> tokens, as the released BiMediX2 prompt does: the chat\n"
        "template writes both, so the GGUF sets tokenizer.ggml.add_bos_token = false.\n"
        if files.template_name == "bimedix2-llama3"
        else ""
    )
    return (
        "BiMediX2 model exported for llama.cpp, Ollama and LM Studio\n"
        "============================================================\n\n"
        f"{RESEARCH_NOTICE}\n{RESEARCH_NOTICE_AR}\n\n"
        f"Exported from: {source}\nQuantization:  {quant}\nChat template: {files.template_name} "
        "(stored in the GGUF as tokenizer.chat_template)\n\n"
        f"Files\n  {files.model}\n      language model (GGUF, llama architecture)\n{mmproj}"
        "  Modelfile\n      Ollama: ollama create bimedix2 -f Modelfile\n"
        "  export.json\n      the resolved export settings and library versions\n\n"
        f"llama.cpp:  {run} --temp 0.1\n"
        f"LM Studio:  copy the folder {files.lmstudio_dir.split('/')[0]}/ into LM Studio's models directory "
        "(e.g. ~/.lmstudio/models/); an mmproj file beside the model gives it vision.\n\n"
        f"{bos}Generation stops at {', '.join(files.stop_tokens)}.\n"
    )


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 `text` at `path` (inside the export's temporary directory, renamed as a whole later)."""
    path.write_text(text, encoding="utf-8")
    return path
