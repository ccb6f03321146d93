#!/usr/bin/env bash
# Set up xgen-local in ./.venv: CPU PyTorch first, then the project with its test extras.
set -euo pipefail
cd "$(dirname "$0")"

python3 -m venv .venv
.venv/bin/pip install --upgrade pip
# A bare `torch` requirement would pull a multi-GB CUDA build; the CPU wheel is enough here.
.venv/bin/pip install torch==2.13.0
# llama-cpp-python builds from source; portable flags so the wheel pip caches runs on any x86-64 CPU.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/pip install -e '.[dev]'

# Offline GPT-2 ranks for the XGen tokenizer, when this checkout sits beside ../shared.
ranks=../shared/data/r50k_base.tiktoken
if [ -f "$ranks" ]; then
    cache="${TIKTOKEN_CACHE_DIR:-$(.venv/bin/python -c 'import tempfile; print(tempfile.gettempdir())')/data-gym-cache}"
    mkdir -p "$cache"
    cp "$ranks" "$cache/0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4"
fi
echo "xgen-local is installed: .venv/bin/xgen --help"
