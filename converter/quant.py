"""Output types, llama.cpp's per-tensor type policy, and llama.cpp's own quantizer.

A GGUF "file type" such as Q4_K_M is a policy, not one tensor type: the output matrix
and some attn_v / ffn_down layers get more bits. The rules below mirror
`llama_tensor_get_type` in llama.cpp's `src/llama-quant.cpp` for the types we offer, so
our single-pass output is byte-identical to `llama_model_quantize` (a test proves it).

Quantization itself calls `ggml_quantize_chunk` in the ggml library that
llama-cpp-python bundles: the same code llama.cpp runs, so there is nothing to re-derive.
ctypes releases the GIL, so row ranges run on several threads.
"""

from __future__ import annotations

import ctypes
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q, LlamaFileType

from models.errors import XGenError
from models.hardware import usable_cores
from models.llama_cpp_utils import import_llama_cpp


@dataclass(frozen=True)
class FileType:
    name: str
    ftype: LlamaFileType  # written to general.file_type; what llama_model_quantize takes
    base: Q  # the type most tensors get
    # Largest normalised MSE of llama.cpp's logits against the fp32 PyTorch model that
    # `verify` and tests/test_convert.py accept for a file of this type.
    logits_nmse_bound: float


# The bounds: NMSE measured on the tests' tiny random model (45 tokens): f32 3.5e-8,
# f16 4.0e-7, q8_0 2.8e-4, q6_k 1.9e-3, q5_k_m 6.3e-3, q4_k_m 2.3e-2, q4_0 3.1e-2; each
# bound is about twice that (f32/f16: 1e-4). Random weights quantize worse than trained
# ones, so a real model sits well inside them; a damaged tensor is orders of magnitude out.
FILE_TYPES: dict[str, FileType] = {
    ft.name: ft
    for ft in (
        FileType("f32", LlamaFileType.ALL_F32, Q.F32, 1e-4),
        FileType("f16", LlamaFileType.MOSTLY_F16, Q.F16, 1e-4),
        FileType("q8_0", LlamaFileType.MOSTLY_Q8_0, Q.Q8_0, 6e-4),
        FileType("q4_0", LlamaFileType.MOSTLY_Q4_0, Q.Q4_0, 6e-2),
        FileType("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, Q.Q4_K, 4.5e-2),
        FileType("q5_k_m", LlamaFileType.MOSTLY_Q5_K_M, Q.Q5_K, 1.2e-2),
        FileType("q6_k", LlamaFileType.MOSTLY_Q6_K, Q.Q6_K, 4e-3),
    )
}
DEFAULT_FILE_TYPE = "q4_k_m"
# The one table of logits bounds, by type name.
LOGITS_NMSE_BOUNDS: dict[str, float] = {name: ft.logits_nmse_bound for name, ft in FILE_TYPES.items()}

UNQUANTIZED = (Q.F32, Q.F16)


def get_file_type(name: str) -> FileType:
    try:
        return FILE_TYPES[name.lower()]
    except KeyError:
        raise XGenError(f"unknown type {name!r}; choose one of: {', '.join(FILE_TYPES)}") from None


def file_type_of(ftype: int) -> FileType | None:
    """Our FileType for a GGUF's `general.file_type` value, or None for a type we do not make."""
    return next((ft for ft in FILE_TYPES.values() if int(ft.ftype) == ftype), None)


def ftype_label(ftype: int) -> str:
    """A readable name for a `general.file_type` value (LlamaFileType's, or the number)."""
    try:
        return LlamaFileType(ftype).name
    except ValueError:
        return str(ftype)


# --- the policy -------------------------------------------------------------------

_LAYER = re.compile(r"^blk\.(\d+)\.")

# Where a block size does not divide a row, llama.cpp falls back to these.
_FALLBACK = {Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0}


def _use_more_bits(layer: int, n_layers: int) -> bool:
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def block_size(qtype: Q) -> int:
    return GGML_QUANT_SIZES[qtype][0]


def tensor_type(name: str, shape: tuple[int, ...], file_type: FileType, n_layers: int) -> Q:
    """The GGML type of one GGUF tensor under `file_type` (shape in numpy order)."""
    if len(shape) < 2 or not name.endswith("weight") or name.endswith("_norm.weight"):
        return Q.F32  # norms and vectors stay f32, as llama.cpp keeps them
    new = file_type.base
    if new in UNQUANTIZED:
        return new
    ncols = shape[-1]
    match = _LAYER.match(name)
    layer = int(match.group(1)) if match else -1
    mixed = file_type.ftype in (LlamaFileType.MOSTLY_Q4_K_M, LlamaFileType.MOSTLY_Q5_K_M)
    if name == "output.weight":
        if ncols % block_size(new):
            new = Q.Q8_0
        elif new != Q.Q8_0:
            new = Q.Q6_K
    elif name.endswith(("attn_v.weight", "ffn_down.weight")) and mixed:
        if _use_more_bits(layer, n_layers):
            new = Q.Q6_K
    if ncols % block_size(new):
        new = _FALLBACK.get(new, new)
        if ncols % block_size(new):
            new = Q.F16
    return new


def tensor_nbytes(shape: tuple[int, ...], qtype: Q) -> int:
    block, type_size = GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape))
    return n // block * type_size


# --- llama.cpp's quantizer through ctypes ------------------------------------------


@cache
def _ggml() -> ctypes.CDLL:
    llama_cpp = import_llama_cpp()
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    candidates = sorted(lib_dir.glob("libggml-base.*")) + sorted(lib_dir.glob("ggml-base.*"))
    if not candidates:
        raise XGenError(f"llama-cpp-python's ggml library was not found in {lib_dir}; reinstall llama-cpp-python")
    lib = ctypes.CDLL(str(candidates[0]))
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    return lib


def quantize(data: np.ndarray, qtype: Q, threads: int | None = None) -> np.ndarray:
    """Quantize a 2-D f32 array row by row with ggml; returns the raw bytes [rows, row_bytes].

    F32 is returned as is; F16 also goes through ggml so rounding matches llama.cpp.
    """
    if qtype == Q.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    src = np.ascontiguousarray(data, dtype=np.float32)
    if src.ndim != 2:
        raise ValueError(f"quantize expects a 2-D array, got shape {src.shape}")
    rows, n_per_row = src.shape
    if n_per_row % block_size(qtype):
        raise ValueError(f"rows of {n_per_row} do not split into {qtype.name} blocks")
    lib = _ggml()
    if lib.ggml_quantize_requires_imatrix(int(qtype)):
        raise XGenError(f"{qtype.name} needs an importance matrix, which this converter does not compute")
    lib.ggml_quantize_init(int(qtype))
    row_bytes = tensor_nbytes((1, n_per_row), qtype)
    dst = np.empty((rows, row_bytes), dtype=np.uint8)
    threads = max(1, min(threads or usable_cores(), rows))
    step = -(-rows // threads)
    src_ptr, dst_ptr = src.ctypes.data, dst.ctypes.data

    def run(first: int) -> int:
        n = min(step, rows - first)
        return lib.ggml_quantize_chunk(int(qtype), src_ptr, dst_ptr, first * n_per_row, n, n_per_row, None)

    if threads == 1:
        written = run(0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            written = sum(pool.map(run, range(0, rows, step)))
    if written != dst.nbytes:
        raise RuntimeError(f"ggml wrote {written} bytes for {qtype.name}, expected {dst.nbytes}")
    return dst


def quantization_error(data: np.ndarray, quantized: np.ndarray, qtype: Q, rows_per_step: int = 4096) -> float:
    """Normalised squared error of a quantized tensor: ||dequant(q) - w||^2 / ||w||^2.

    Dequantizes with the gguf package's numpy code (independent of the ggml quantizer
    that made `quantized`), a few thousand rows at a time so memory stays small.
    """
    if qtype == Q.F32:
        return 0.0
    import gguf.quants

    src = data.reshape(data.shape[0], -1) if data.ndim > 1 else data.reshape(1, -1)
    q = quantized.reshape(src.shape[0], -1)
    err = ref = 0.0
    for first in range(0, src.shape[0], rows_per_step):
        w = np.asarray(src[first:first + rows_per_step], dtype=np.float64)
        back = gguf.quants.dequantize(q[first:first + rows_per_step], qtype).reshape(w.shape)
        err += float(np.sum((back - w) ** 2))
        ref += float(np.sum(w ** 2))
    return err / ref if ref else 0.0
