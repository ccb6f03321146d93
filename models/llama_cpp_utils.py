"""Small helpers around llama-cpp-python that its high-level API gets wrong or lacks."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from models.errors import XGenError


def load_llama(path: str | Path, *, n_ctx: int = 512, logits_all: bool = False, vocab_only: bool = False,
               n_threads: int | None = None):
    """Open a GGUF with llama-cpp-python, quietly, with a clear error if it cannot."""
    from llama_cpp import Llama

    from models.gguf_file import read_gguf

    path = Path(path)
    read_gguf(path)  # a clear error for a damaged or foreign file, before llama.cpp sees it
    try:
        return Llama(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, vocab_only=vocab_only,
                     n_threads=n_threads or os.cpu_count(), n_batch=min(n_ctx, 512) if n_ctx else 512, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise XGenError(f"{path}: llama.cpp cannot load it ({str(exc).splitlines()[0]})") from None


def llama_logits(llm, ids: list[int]) -> np.ndarray:
    """Logits [len(ids), vocab] for every position, from a Llama opened with logits_all."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def detokenize(llm, ids: list[int], special: bool = False) -> bytes:
    """Token ids -> bytes, exactly.

    llama-cpp-python's own `detokenize` reads each piece into a 32-byte buffer and
    silently mangles longer ones; GPT-2's vocabulary has tokens of up to 128 bytes
    (runs of dashes, spaces), so ask llama.cpp again with the size it reports.
    """
    import llama_cpp

    vocab = llm._model.vocab
    size = 64
    buf = ctypes.create_string_buffer(size)
    out = bytearray()
    for token in ids:
        n = llama_cpp.llama_token_to_piece(vocab, llama_cpp.llama_token(token), buf, size, 0, special)
        if n < 0:
            size = -n
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(vocab, llama_cpp.llama_token(token), buf, size, 0, special)
        out += buf.raw[:n]
    return bytes(out)


def parse_system_info(text: str) -> dict[str, dict[str, str]]:
    """llama.cpp's `llama_print_system_info()` text -> {backend: {feature: value}}.

    The text is `CPU : SSE3 = 1 | AVX2 = 1 | ... | CUDA : ARCHS = 890 | ... | `: each
    backend's name, then its compiled-in features (llama.cpp lists only those present).
    """
    backends: dict[str, dict[str, str]] = {}
    current = "CPU"
    for part in text.split("|"):
        part = part.strip()
        if " : " in part:
            current, _, part = (p.strip() for p in part.partition(" : "))
            backends.setdefault(current, {})
        name, sep, value = part.partition("=")
        if sep and name.strip():
            backends.setdefault(current, {})[name.strip()] = value.strip()
    return backends


def system_info() -> dict[str, dict[str, str]]:
    """What the installed llama.cpp was built with, per backend (see parse_system_info)."""
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return parse_system_info(raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw))


def engine_info_line() -> str:
    """One line naming the engine build: version, CPU SIMD features, GPU backends.

    e.g. `Engine: llama-cpp-python 0.3.36 (llama.cpp), CPU: SSE3 SSSE3 AVX AVX2 F16C FMA
    BMI2 AVX512 AVX512_VNNI ... REPACK; GPU offload: none`. A slow machine is explained
    by what is missing here (an AVX2-only build on an AVX-512 CPU, no GPU backend).
    """
    try:
        import llama_cpp

        info = system_info()
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, OSError, AttributeError) as exc:
        return f"Engine: llama-cpp-python is not usable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    version = getattr(llama_cpp, "__version__", "?")

    def features(values: dict[str, str]) -> str:
        return " ".join(name if value == "1" else f"{name}={value}" for name, value in values.items()) or "-"

    parts = [f"CPU: {features(info.get('CPU', {}))}"]
    parts += [f"{name}: {features(values)}" for name, values in info.items() if name != "CPU"]
    others = [name for name in info if name != "CPU"]
    offload = ", ".join(others) if gpu and others else ("yes" if gpu else "none")
    return f"Engine: llama-cpp-python {version} (llama.cpp), " + "; ".join(parts) + f"; GPU offload: {offload}"
