#!/usr/bin/env bash
# Build and install llama-cpp-python 0.3.36 from its PyPI source, with one upstream fix applied:
# llama.cpp#25814 (libmtmd's LLaVA graph put CLIP's CLS embedding after the patches, so every image
# token was one position off and the projected CLS reached the LLM; the fix is PR #25844, not yet in
# a release). patches/ holds the diff; the wheel's version becomes 0.3.36+bimedix2.mtmd25844 so the
# toolkit can tell a fixed build from a stock one.
#   scripts/build-llama-cpp.sh [PYTHON]    PYTHON: the interpreter to install into (default .venv/bin/python)
# The built wheel is cached (BIMEDIX2_WHEEL_CACHE, default ~/.cache/bimedix2/wheels), keyed by the
# source's hash, the patch and CMAKE_ARGS, so a rerun installs in seconds. The build: 4 minutes on an idle 2-core machine, ~11 when busy.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${1:-.venv/bin/python}
VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
PATCH=$PWD/patches/llama-cpp-python-$VERSION-mtmd-cls-first.patch
CACHE=${BIMEDIX2_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bimedix2/wheels}

key=$( (echo "$SDIST_SHA256"; cat "$PATCH"; echo "${CMAKE_ARGS:-}") | sha256sum | cut -c1-16)
wheel_dir=$CACHE/llama-cpp-python-$VERSION-$key
if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work"
    sdist=$work/llama_cpp_python-$VERSION.tar.gz
    echo "$SDIST_SHA256  $sdist" | sha256sum --check --quiet -
    tar -xzf "$sdist" -C "$work"
    src=$work/llama_cpp_python-$VERSION
    (cd "$src" && git apply --whitespace=nowarn "$PATCH")
    mkdir -p "$work/out"
    echo "build-llama-cpp: compiling llama.cpp (4-11 minutes on 2 cores)" >&2
    "$PY" -m pip wheel --quiet --no-deps "$src" -w "$work/out"
    mkdir -p "$CACHE"
    # Publish the cache entry whole or not at all (a killed build leaves nothing half-written).
    mv "$work/out" "$wheel_dir.tmp.$$" && mv -T "$wheel_dir.tmp.$$" "$wheel_dir"
fi
"$PY" -m pip install --quiet --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl
# Its runtime dependencies (numpy, typing-extensions, diskcache, jinja2), as pip would resolve them.
"$PY" -m pip install --quiet "llama-cpp-python==$VERSION" >/dev/null
echo "build-llama-cpp: installed $("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')" >&2
