#!/usr/bin/env bash
# Set up xgen-local in ./.venv: PyTorch, llama-cpp-python compiled for this machine, then
# the project with its test extras.
#
#   ./setup.sh           CPU build for the widest safe SIMD level here (Metal on macOS)
#   ./setup.sh --cuda    llama.cpp with CUDA (same as XGEN_ACCEL=cuda ./setup.sh)
#   ./setup.sh --cpu     CPU only, also on macOS
#
# Environment: XGEN_ACCEL (auto|cpu|cuda|metal), CMAKE_ARGS (replaces the chosen llama.cpp
# flags), XGEN_WHEEL_CACHE (where built llama-cpp-python wheels are kept, default
# ~/.cache/xgen-local/wheels), XGEN_TORCH (cpu|cuda: which PyTorch build; default cuda
# only where an NVIDIA GPU is present or --cuda is given).
set -euo pipefail
cd "$(dirname "$0")"

accel="${XGEN_ACCEL:-auto}"
for arg in "$@"; do
    case "$arg" in
        --cuda) accel=cuda ;;
        --cpu) accel=cpu ;;
        --metal) accel=metal ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown option '$arg' (use --cpu, --cuda or --metal)" >&2; exit 2 ;;
    esac
done
case "$accel" in
    auto|cpu|cuda|metal) ;;
    *) echo "setup.sh: XGEN_ACCEL must be auto, cpu, cuda or metal, not '$accel'" >&2; exit 2 ;;
esac
case "${XGEN_TORCH:-}" in
    ""|cpu|cuda) ;;
    *) echo "setup.sh: XGEN_TORCH must be cpu or cuda, not '$XGEN_TORCH'" >&2; exit 2 ;;
esac

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip

# PyTorch first: a bare `torch` requirement would pull PyPI's multi-GB CUDA build on Linux.
torch_version=2.13.0
torch_build="${XGEN_TORCH:-}"
if [ -z "$torch_build" ]; then
    torch_build=cpu
    if [ "$accel" = cuda ] || { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; } \
        || [ -e /proc/driver/nvidia/version ]; then
        torch_build=cuda
    fi
fi
if .venv/bin/python -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
    echo "torch $torch_version: already installed"
elif [ "$(uname -s)" = Linux ] && [ "$torch_build" = cpu ]; then
    # The CPU build: from pip's configured sources when they have it (a local wheel, offline),
    # otherwise from PyTorch's CPU index (PyPI's Linux wheels are CUDA builds).
    .venv/bin/pip install "torch==$torch_version+cpu" 2>/dev/null \
        || .venv/bin/pip install "torch==$torch_version+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
else
    .venv/bin/pip install "torch==$torch_version"  # macOS (CPU/MPS), or the CUDA build
fi

# llama-cpp-python, compiled from source for this machine's widest safe SIMD level (AVX-512
# where present, never AMX), Metal or CUDA; built once per set of flags and kept in a wheel
# cache keyed by them (see models/llama_build.py).
.venv/bin/python -m models.llama_build install --accel "$accel"

.venv/bin/pip install -e '.[dev]'

# Offline GPT-2 ranks for the XGen tokenizer, when this checkout sits beside ../shared.
ranks=../shared/data/r50k_base.tiktoken
if [ -f "$ranks" ]; then
    cache="${TIKTOKEN_CACHE_DIR:-$(.venv/bin/python -c 'import tempfile; print(tempfile.gettempdir())')/data-gym-cache}"
    mkdir -p "$cache"
    cp "$ranks" "$cache/0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4"
else
    # Setting up is a time the network is used anyway: tiktoken fetches and caches the
    # ranks now, so no later command (xgen convert of a local folder, xgen demo) needs it.
    .venv/bin/python -c "import tiktoken; tiktoken.get_encoding('r50k_base')"
fi
.venv/bin/python -c "from models.llama_cpp_utils import engine_info_line; print(engine_info_line())"
echo "xgen-local is installed: .venv/bin/xgen --help"
