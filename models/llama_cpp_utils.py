"""Small helpers around llama-cpp-python that its high-level API gets wrong or lacks."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import threading
from pathlib import Path

import numpy as np

from models.errors import XGenError


def passive_openmp_threads() -> None:
    """Let llama.cpp's OpenMP threads sleep between graphs, unless the user set
    OMP_WAIT_POLICY.

    By default they spin for a while after every graph, waiting for the next one. On a
    laptop or a shared 2-core machine that spin takes the CPU from whatever else runs (the
    app's UI thread, a second process, the next token's sampling): measured here, a tiny
    model's 100-token generations took 1.0 s with passive waiting and 2.8-10.4 s with
    spinning while one other process was busy, and two test modules ran in 39 s instead of
    89 s. libgomp reads the variable once, when it loads with llama.cpp, so this must run
    before the first `import llama_cpp` (import_llama_cpp does it).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def import_llama_cpp():
    """The llama_cpp module, loaded with passive OpenMP threads: every load of llama.cpp in
    xgen goes through here, so the first one sets the policy (see passive_openmp_threads)."""
    passive_openmp_threads()
    import llama_cpp

    return llama_cpp


def load_llama(path: str | Path, *, n_ctx: int = 512, logits_all: bool = False, vocab_only: bool = False,
               n_threads: int | None = None):
    """Open a GGUF with llama-cpp-python, quietly, with a clear error if it cannot."""
    from models.gguf_file import read_gguf

    Llama = import_llama_cpp().Llama

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
    llama_cpp = import_llama_cpp()
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
    llama_cpp = import_llama_cpp()
    raw = llama_cpp.llama_print_system_info()
    return parse_system_info(raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw))


def engine_info_line() -> str:
    """One line naming the engine build: version, CPU SIMD features, GPU backends.

    e.g. `Engine: llama-cpp-python 0.3.36 (llama.cpp), CPU: SSE3 SSSE3 AVX AVX2 F16C FMA
    BMI2 AVX512 AVX512_VNNI ... REPACK; GPU offload: none`. A slow machine is explained
    by what is missing here (an AVX2-only build on an AVX-512 CPU, no GPU backend).
    """
    try:
        llama_cpp = import_llama_cpp()
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


# ---------------------------------------------------------------- weight repacking

REPACK_ENV = "XGEN_WEIGHT_REPACK"  # on (default) or off
# llama.cpp's tiled K-quant matmul (ggml-cpu/tiled/, with an AVX512-VNNI microkernel) first
# ships in the llama.cpp vendored by llama-cpp-python 0.3.36 (absent from 0.3.34's sdist).
TILED_KQUANT_SINCE = (0, 3, 36)
_model_params_lock = threading.Lock()


def version_tuple(text: str) -> tuple[int, ...]:
    """`0.3.36` -> (0, 3, 36): the first three numbers of a version string."""
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def repack_weights(setting: str | None = None) -> bool:
    """Whether llama.cpp repacks the model's K-quant weights when it loads them.

    llama.cpp's CPU backend repacks Q4_K weights into an 8-row interleaved copy by
    default and runs them with its `gemm/gemv_q4_K_8x8` kernels; xgen keeps that default.
    `setting` (default: $XGEN_WEIGHT_REPACK) is on or off: off leaves the weights in their
    GGUF layout, memory-mapped, which is what llama.cpp's tiled K-quant kernel reads (see
    tiled_kquant_kernel). A bad value is a one-line XGenError.
    """
    setting = (os.environ.get(REPACK_ENV, "on") if setting is None else setting).strip().lower() or "on"
    if setting in ("on", "1", "yes", "true"):
        return True
    if setting in ("off", "0", "no", "false"):
        return False
    raise XGenError(f"{REPACK_ENV} must be on or off, not {setting!r}")


def tiled_kquant_kernel(info: dict[str, dict[str, str]] | None = None, version: str | None = None) -> bool:
    """Whether this llama.cpp has the tiled K-quant matmul with its AVX512-VNNI microkernel.

    It runs prompt batches only for weights left in their GGUF layout (it skips repacked
    ones). Measured on the 7B Q4_K_M on an AVX512-VNNI build (bench/RESULTS.md, "llama.cpp
    build"): prompts about 1.4x faster than with repacked weights, generation 20-35%
    slower (one-row products then take llama.cpp's plain AVX2 dot product instead of the
    repacked 8-row kernel). A request pays off only when it reads well over ten prompt
    tokens for each token it writes, so repacking stays the default and this is an opt-in.
    """
    if info is None or version is None:
        llama_cpp = import_llama_cpp()
        info = system_info() if info is None else info
        version = getattr(llama_cpp, "__version__", "0") if version is None else version
    return info.get("CPU", {}).get("AVX512_VNNI") == "1" and version_tuple(version) >= TILED_KQUANT_SINCE


def weight_layout_line() -> str:
    """One line saying how llama.cpp's CPU kernels get the weights, and the other choice."""
    try:
        repack = repack_weights()
    except XGenError as exc:
        return f"CPU weights: {exc}"
    if not repack:
        return f"CPU weights: kept in the GGUF layout, memory-mapped ({REPACK_ENV}=off)"
    if tiled_kquant_kernel():
        return (f"CPU weights: repacked at load (llama.cpp's default); {REPACK_ENV}=off reads prompts "
                "about 1.4x faster with the tiled AVX512-VNNI kernel but generates slower")
    return f"CPU weights: repacked at load (llama.cpp's default; {REPACK_ENV}=off keeps the GGUF layout)"


@contextlib.contextmanager
def weight_repacking(enabled: bool):
    """Within this block, `llama_cpp.Llama(...)` loads with weight repacking on or off.

    The bindings fill llama.cpp's model parameters inside `Llama.__init__` from
    `llama_model_default_params()` and expose no `use_extra_bufts` argument, so that
    factory is wrapped for the length of the block; the lock keeps two threads loading
    models at once from seeing each other's setting.
    """
    low = import_llama_cpp().llama_cpp  # the raw bindings module

    with _model_params_lock:
        original = low.llama_model_default_params

        def params():
            value = original()
            value.use_extra_bufts = enabled
            return value

        low.llama_model_default_params = params
        try:
            yield
        finally:
            low.llama_model_default_params = original
