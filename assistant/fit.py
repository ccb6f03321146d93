"""Will the model fit? Memory estimated before loading, so a laptop is not driven into swap.

For a GGUF on llama.cpp the working set is the weights (memory-mapped; on CPU most of
them are copied into a repacked anonymous buffer at load, after which their mapped pages
are no longer read), the KV cache (2 x layers x context x kv heads x head size, 2 bytes a
value for f16, 1.0625 for q8_0) and compute buffers (attention scores of one batch). For
the 7B Q4_K_M at 8,192 tokens (bench/RESULTS.md) that is 8.3 GiB with the f16 cache:
RssAnon 7.44 GiB (4 GiB cache, ~3 GiB repacked weights, compute) plus ~0.9 GiB of mapped
weights still read; the 11.4 GiB peak VmRSS counts the repacked weights twice. The q8_0
cache brings it to 6.4 GiB, which ran inside an 8 GB memory limit.

When the requested setup does not fit, the cache becomes q8_0 (unless a type was asked
for), then the context shrinks (unless one was asked for), each with a one-line note;
otherwise loading is refused with what would fit. An HF folder on the torch engine holds
every weight in fp32 on the CPU (bf16 on CUDA): one that does not fit is refused, with
`xgen convert` suggested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.errors import XGenError
from models.hardware import available_memory

GiB = 2**30
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32}  # bytes per cached value
N_BATCH = 256  # the llama engine's batch: the attention scores of one batch are f32
FIXED = 128 * 2**20  # the runtime itself (Python, the imports, llama.cpp's own buffers)
MIN_CONTEXT = 2048  # shorter than this and a document no longer fits: refuse instead


@dataclass(frozen=True)
class LlamaShape:
    weights: int  # bytes of the GGUF file
    n_layers: int
    kv_width: int  # kv heads x head size
    n_head: int
    context_length: int


@dataclass(frozen=True)
class LlamaPlan:
    n_ctx: int
    kv_type: str
    note: str = ""


def llama_need(shape: LlamaShape, n_ctx: int, kv_type: str) -> int:
    cache = 2 * shape.n_layers * n_ctx * shape.kv_width * KV_BYTES[kv_type]
    scores = n_ctx * N_BATCH * shape.n_head * 4
    return int(shape.weights + cache + scores + FIXED)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def plan_llama(shape: LlamaShape, n_ctx: int, kv_type: str | None, *, ctx_asked: bool,
               available: int | None) -> LlamaPlan:
    """The context and cache type to load with, given `available` bytes (None: unknown)."""
    kv = kv_type or "f16"
    if available is None or llama_need(shape, n_ctx, kv) <= available:
        return LlamaPlan(n_ctx, kv)
    need = llama_need(shape, n_ctx, kv)
    if kv_type is None and llama_need(shape, n_ctx, "q8_0") <= available:
        return LlamaPlan(n_ctx, "q8_0", f"the model with an f16 cache at {n_ctx:,} tokens needs about {_gib(need)} "
                                        f"and {_gib(available)} is free: using a q8_0 KV cache (half the size)")
    kv = kv_type or "q8_0"
    fits = _shorter_contexts_that_fit(shape, n_ctx, kv, available)
    if fits and not ctx_asked:
        return LlamaPlan(fits[0], kv, f"{n_ctx:,} tokens of context need about {_gib(need)} and {_gib(available)} "
                                      f"is free: using {fits[0]:,} tokens with a {kv} cache (--ctx to choose)")
    advice = (f"--ctx {fits[0]}" + ("" if kv_type else " --kv-cache q8_0")) if fits else \
        "close other programs or use a smaller quantization (xgen convert --type q4_0)"
    raise XGenError(f"the model needs about {_gib(llama_need(shape, n_ctx, kv))} at {n_ctx:,} tokens of context "
                    f"but {_gib(available)} is free; try {advice}")


def _shorter_contexts_that_fit(shape: LlamaShape, n_ctx: int, kv: str, available: int) -> list[int]:
    """The longest context below n_ctx, in steps of 256 and not under MIN_CONTEXT, that fits
    (a list of it, or empty). Solved, not searched: the need grows linearly with the context,
    and a search from a context of 10^12 would take hours."""
    per_token = llama_need(shape, 1, kv) - llama_need(shape, 0, kv)
    room = int((available - llama_need(shape, 0, kv)) // max(per_token, 1))
    steps = max(1, -(-(n_ctx - room) // 256))
    for c in (n_ctx - 256 * steps, n_ctx - 256 * (steps + 1)):  # the second if rounding misled the first
        if c >= MIN_CONTEXT and llama_need(shape, c, kv) <= available:
            return [c]
    return []


def plan_gguf(path: str | Path, n_ctx: int, kv_type: str | None, *, available: int | None = None) -> LlamaPlan:
    """plan_llama for a GGUF file; n_ctx 0 means the model's own context."""
    from models.gguf_file import read_gguf

    info = read_gguf(path)
    head = info.n_embd // info.n_head if info.n_head else 0
    shape = LlamaShape(info.nbytes, info.n_layers, info.n_head_kv * head, info.n_head, info.context_length)
    if not shape.n_layers or not shape.kv_width:
        return LlamaPlan(n_ctx, kv_type or "f16")  # a header without the shape: nothing to estimate
    requested = n_ctx or info.context_length
    return plan_llama(shape, requested, kv_type, ctx_asked=bool(n_ctx),
                      available=available_memory() if available is None else available)


def check_torch_fits(folder: str | Path, device: str, *, available: int | None = None) -> None:
    """Refuse an HF checkpoint whose weights alone (fp32 on CPU, bf16 on CUDA) exceed free memory."""
    from models.config import ModelArgs

    if device != "cpu":
        return  # GPU memory is the torch engine's own check
    a = ModelArgs.from_folder(folder)
    kv = a.n_kv_heads * (a.dim // a.n_heads)
    per_layer = 2 * a.dim * a.dim + 2 * a.dim * kv + 3 * a.dim * a.intermediate_size + 2 * a.dim
    params = 2 * a.vocab_size * a.dim + a.n_layers * per_layer + a.dim
    need = params * 4
    free = available_memory() if available is None else available
    if free is not None and need > free:
        raise XGenError(f"{Path(folder).name} in fp32 on the CPU needs about {_gib(need)} and {_gib(free)} is free; "
                        f"convert it to a 4-bit GGUF instead: xgen convert {folder}")
