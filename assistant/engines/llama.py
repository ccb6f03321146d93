"""The llama.cpp engine: a GGUF through llama-cpp-python (CPU, Metal or CUDA).

Only llama-cpp-python's low-level pieces are used: `Llama.eval` (which keeps
`input_ids[:n_tokens]` equal to what is in the KV cache), the KV-cache removal of the
memory API, and a sampler chain of llama.cpp's own samplers. Its high-level
`create_completion` is avoided: it cannot be interrupted during the prompt, it decodes
text with a 32-byte buffer that mangles long GPT-2 tokens, and it parses special-token
text in string prompts.

Sampler chain, in the order of assistant/engines/sampling.py (the torch engine):
logit bias (-inf on the padding ids 50313..51199), repetition penalty over the last
`repeat_last_n` ids (the prompt's tail is fed to it first), then greedy, or temperature,
top-k, top-p and a seeded draw.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from assistant.engines.base import Engine, SamplingSettings, common_prefix_length
from assistant.engines.driver import Prefilled, Step
from models.errors import XGenError
from models.gguf_file import file_fingerprint, read_gguf
from models.hardware import usable_cores
from models.llama_cpp_utils import detokenize, import_llama_cpp, repack_weights, version_tuple, weight_repacking
from models.tokenizer import N_VOCAB

KV_TYPES = {"f16": 1, "q8_0": 8}  # GGML_TYPE_F16, GGML_TYPE_Q8_0


GGML_LOG_ERROR, GGML_LOG_CONT = 4, 5  # ggml.h: NONE, DEBUG, INFO, WARN, ERROR, CONT

# The engine whose llama_decode is running on this thread (llama.cpp logs from the thread
# that calls it), so that the log filter can tell an engine's own abort from a failure.
_decoding: ContextVar["LlamaEngine | None"] = ContextVar("xgen_llama_decoding", default=None)


class _ErrorsOnly:
    """llama.cpp's log callback (one per process, as llama_log_set is): errors only.

    llama-cpp-python maps ggml's log levels with an older enum (WARN reads as ERROR), so
    its quiet mode prints warnings such as the one llama.cpp gives when a stop request
    aborts a batch; only real errors should reach the user's terminal. While an engine's
    stop request unwinds llama_decode, its "failed to compute" errors are expected."""

    def __init__(self) -> None:
        self.last = 0  # the level of the previous message, which a CONT line continues

    def __call__(self, level: int, text: bytes, _user_data) -> None:
        engine = _decoding.get()
        if engine is not None and engine.aborting:
            return
        if level == GGML_LOG_ERROR or (level == GGML_LOG_CONT and self.last == GGML_LOG_ERROR):
            sys.stderr.write(text.decode("utf-8", errors="replace"))
        if level != GGML_LOG_CONT:
            self.last = level


@functools.cache
def _quiet_logs(llama_cpp):
    """Install the log filter once; the cache keeps its ctypes wrapper alive for llama.cpp."""
    callback = llama_cpp.llama_log_callback(_ErrorsOnly())
    llama_cpp.llama_log_set(callback, None)
    return callback


LLAMA_CPP_PYTHON_FLOOR = (0, 3, 35)


def _check_bindings(llama_cpp) -> None:
    """The llama-cpp-python features this engine relies on, checked before a model loads:
    a version older than the floor fails later in ways that are easy to miss (prefix reuse
    silently lost when kv_cache_seq_rm returns nothing, a TypeError from add_penalties)."""
    import inspect

    from llama_cpp._internals import LlamaContext, LlamaSampler

    version = getattr(llama_cpp, "__version__", "0")
    parts = version_tuple(version)
    missing = [name for name, ok in (
        ("llama_set_abort_callback", hasattr(llama_cpp, "llama_set_abort_callback")),
        ("LlamaContext.kv_cache_seq_rm", hasattr(LlamaContext, "kv_cache_seq_rm")),
        ("LlamaSampler.add_penalties(n_vocab, ...)",
         len(inspect.signature(LlamaSampler.add_penalties).parameters) == 6),
    ) if not ok]
    if parts < LLAMA_CPP_PYTHON_FLOOR or missing:
        floor = ".".join(map(str, LLAMA_CPP_PYTHON_FLOOR))
        lacking = f" (it lacks {', '.join(missing)})" if missing else ""
        raise XGenError(f"llama-cpp-python {version} is too old for xgen-local{lacking}: it needs {floor} or "
                        f"newer; run ./setup.sh again, or pip install 'llama-cpp-python>={floor}'")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class LlamaEngine(Engine):
    name = "llama"

    def __init__(self, model_path: str | Path, *, n_ctx: int = 0, n_threads: int | None = None,
                 n_gpu_layers: int | None = None, n_batch: int = 256, flash_attn: bool = False,
                 kv_type: str | None = None, repack: bool | None = None):
        """Open `model_path` (a GGUF).

        n_ctx 0 uses the model's trained context. n_gpu_layers None offloads every layer
        when this llama.cpp build can (Metal/CUDA), else none. kv_type "f16" (default) or
        "q8_0": a q8_0 KV cache halves its memory; llama.cpp needs flash attention for a
        quantized V cache, so q8_0 turns flash_attn on. repack: whether
        llama.cpp repacks the weights for its CPU kernels; None reads $XGEN_WEIGHT_REPACK
        (default on: models.llama_cpp_utils.repack_weights).
        """
        llama_cpp = import_llama_cpp()
        _check_bindings(llama_cpp)
        _quiet_logs(llama_cpp)
        path = Path(model_path)
        summary = read_gguf(path)  # clear errors for a missing, damaged or non-XGen file
        if n_ctx < 0:
            raise XGenError(f"n_ctx must be 0 (the model's context) or positive, not {n_ctx}")
        if summary.context_length and n_ctx > summary.context_length:
            raise XGenError(f"n_ctx {n_ctx} exceeds the model's context of {summary.context_length} tokens")
        if n_batch < 1:
            raise XGenError(f"n_batch must be positive, not {n_batch}")
        if kv_type is not None and kv_type.lower() not in KV_TYPES:
            raise XGenError(f"unknown KV cache type {kv_type!r}; use f16 or q8_0")
        self.kv_type = (kv_type or "f16").lower()
        kv = KV_TYPES[self.kv_type]
        if kv != KV_TYPES["f16"]:
            flash_attn = True
        if n_gpu_layers is None:
            n_gpu_layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0
        threads = n_threads or usable_cores()
        self.weights_repacked = repack_weights() if repack is None else repack
        self.model_name = summary.name
        self.path = path
        try:
            with weight_repacking(self.weights_repacked):
                self._llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                    n_threads=threads, n_threads_batch=threads, n_gpu_layers=n_gpu_layers,
                    flash_attn=flash_attn, type_k=kv, type_v=kv, logits_all=False, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise XGenError(f"{path}: llama.cpp cannot load it ({_first_line(exc)})") from None
        # Stop requests reach into llama_decode: ggml checks this between graph nodes, so a
        # long prompt batch on a 7B model ends within milliseconds of Ctrl+C, not seconds.
        self._stop_event: threading.Event | None = None  # the running reply's stop request
        self.aborting = False  # this engine's llama_decode is unwinding on a stop request
        self._abort_callback = llama_cpp.ggml_abort_callback(self._should_abort)
        llama_cpp.llama_set_abort_callback(self._llm._ctx.ctx, self._abort_callback, None)
        # llama.cpp may round the context up (to a multiple of 256); keep to what was asked.
        self._n_ctx = min(int(self._llm.n_ctx()), n_ctx or summary.context_length or int(self._llm.n_ctx()))
        self._n_batch = int(self._llm.n_batch)
        self._n_vocab = int(self._llm.n_vocab())

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def identity(self) -> str:
        return f"llama:{file_fingerprint(self.path)}:{self.kv_type}"

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        if not text:
            return []
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def token_bytes(self, ids: list[int]) -> bytes:
        return detokenize(self._llm, [i for i in ids if 0 <= i < N_VOCAB])

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None

    # -- internals -----------------------------------------------------------------

    @property
    def cached_ids(self) -> list[int]:
        """The ids whose K/V are in llama.cpp's cache, in position order."""
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    def _truncate_cache(self, keep: int) -> int:
        """Drop the KV cache from position `keep` on; returns how many positions remain."""
        llm = self._llm
        if keep < llm.n_tokens:
            if not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
                llm._ctx.kv_cache_clear()
                keep = 0
            llm.n_tokens = keep
        return llm.n_tokens

    def _should_abort(self, _data) -> bool:
        stop = self._stop_event
        if stop is not None and stop.is_set():
            self.aborting = True
            return True
        return False

    def _eval(self, ids: list[int]) -> bool:
        """Evaluate ids (at most n_batch of them) after the cached ones: one llama_decode.
        False if a stop request aborted it (llama.cpp then drops the batch from its cache)."""
        decoding = _decoding.set(self)
        try:
            self._llm.eval(ids)
        except RuntimeError as exc:  # llama_decode failed (out of KV slots, memory...) or was aborted
            if self._should_abort(None):
                return False
            raise XGenError(f"llama.cpp failed to evaluate the prompt ({_first_line(exc)})") from None
        finally:
            self.aborting = False
            _decoding.reset(decoding)
        return True

    def _sampler(self, settings: SamplingSettings, prompt_ids: list[int]):
        import random

        from llama_cpp._internals import LlamaSampler

        sampler = LlamaSampler()
        if self._n_vocab > N_VOCAB:  # padding rows of the embedding: never sampled
            sampler.add_logit_bias(self._n_vocab, {i: float("-inf") for i in range(N_VOCAB, self._n_vocab)})
        if settings.repeat_penalty != 1.0 and settings.repeat_last_n != 0:
            last_n = settings.repeat_last_n if settings.repeat_last_n > 0 else self._n_ctx  # -1: everything
            sampler.add_penalties(self._n_vocab, last_n, settings.repeat_penalty, 0.0, 0.0)
            for token in prompt_ids[-last_n:]:
                sampler.accept(token)  # the penalty looks at the prompt's tail too
        if settings.temperature <= 0:
            sampler.add_greedy()
        else:
            sampler.add_temp(settings.temperature)
            if settings.top_k > 0:
                sampler.add_top_k(settings.top_k)
            if settings.top_p < 1.0:
                sampler.add_top_p(settings.top_p, 1)
            seed = settings.seed if settings.seed is not None else random.getrandbits(32)
            sampler.add_dist(seed & 0xFFFFFFFF)
        return sampler

    # -- generation ----------------------------------------------------------------

    def stream(self, prompt_ids: list[int], settings: SamplingSettings, budget: int,
               stop: threading.Event | None) -> Iterator[Step]:
        if self._llm is None:
            raise XGenError("this engine has been closed")
        return self._steps(prompt_ids, settings, stop)

    def _steps(self, prompt_ids: list[int], settings: SamplingSettings,
               stop: threading.Event | None) -> Iterator[Step]:
        self._stop_event = stop  # seen by the abort callback between graph nodes
        try:
            # Prompt: reuse the cached prefix, keeping at least one token to evaluate (the
            # sampler needs the logits of the last prompt token). The driver checks the stop
            # request between batches, so the cache holds exactly the batches evaluated.
            n_prompt = len(prompt_ids)
            pos = self._truncate_cache(min(common_prefix_length(self.cached_ids, prompt_ids), n_prompt - 1))
            while pos < n_prompt:
                batch = prompt_ids[pos:pos + self._n_batch]
                if not self._eval(batch):
                    return  # aborted on the stop request
                pos += len(batch)
                yield Prefilled(len(batch), pos)
            sampler = self._sampler(settings, prompt_ids)
            try:
                while True:
                    token = int(sampler.sample(self._llm._ctx, -1))
                    yield token
                    # Asked for another token: feed this one first (never done for the last).
                    if not self._eval([token]):
                        return
            finally:
                sampler.close()
        finally:
            self._stop_event = None
