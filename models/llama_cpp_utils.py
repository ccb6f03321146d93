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
