"""Read a GGUF's header and reject what is not an XGen model before llama.cpp sees it.

llama.cpp prints to stderr and may abort on some malformed files; a clear one-line
error from here is what the user should get instead.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from models.errors import XGenError
from models.gguf_checks import TensorInfo, check_hyperparameters

# Spot checks that tell XGen's vocabulary from any other GPT-2-style one.
XGEN_TOKEN_CHECKS = {50256: "<|endoftext|>", 50257: "\u0120" * 31, 50287: "\u0109" * 9,
                     50295: "<fim_prefix>", 50312: "<reponame>"}


@dataclass(frozen=True)
class GGUFSummary:
    path: Path
    architecture: str
    name: str
    context_length: int
    file_type: int
    n_tokens: int
    chat_template: str | None
    nbytes: int
    n_layers: int = 0
    n_embd: int = 0
    n_head: int = 0
    n_head_kv: int = 0


# GGUF value types -> struct format of a scalar (8 = string, 9 = array).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_KEEP_ARRAYS = {"tokenizer.ggml.tokens"}  # other arrays (merges, scores) are skipped, not decoded
_MAX_NESTING = 8  # arrays of arrays: GGUF allows them, real files hardly nest at all


class _Cursor:
    """Little-endian reads over a memory-mapped file; IndexError past its end."""

    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise IndexError("unexpected end of file in the header")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise IndexError("unexpected end of file in the header")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, vtype: int, keep: bool = True, depth: int = 0):
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            item_type, count = self.take("I"), self.take("Q")
            # Damaged or crafted counts must fail fast, not recurse or loop for minutes.
            if item_type == 9 and depth >= _MAX_NESTING:
                raise ValueError("arrays nested too deeply")
            item_size = struct.calcsize("<" + _SCALARS[item_type]) if item_type in _SCALARS else 8
            if count > (len(self.buf) - self.pos) // item_size:
                raise IndexError(f"an array of {count} items is longer than the file")
            if keep:
                if item_type != 8:
                    raise ValueError(f"the token list holds values of type {item_type}, not strings")
                return [self.string() for _ in range(count)]
            if item_type in _SCALARS:
                self.pos += count * item_size
            elif item_type == 8:
                for _ in range(count):
                    length = self.take("Q")  # read first: `pos += take()` would use the old pos
                    self.pos += length
            else:
                for _ in range(count):
                    self.value(item_type, keep=False, depth=depth + 1)
            return count
        raise ValueError(f"unknown GGUF value type {vtype}")


GGML_MAX_DIMS = 4  # ggml's limit; a header claiming more is damaged or crafted
MAX_ALIGNMENT = 1 << 24


def parse_header(path: Path) -> tuple[dict, list[TensorInfo]]:
    """GGUF metadata and each tensor's name, shape and end offset in the file, read from the header."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        if cur.take("I") != 0x46554747:  # "GGUF"
            raise ValueError("bad magic")
        version = cur.take("I")
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = cur.take("Q"), cur.take("Q")
        meta = {}
        for _ in range(n_kv):
            key = cur.string()
            meta[key] = cur.value(cur.take("I"), keep=key in _KEEP_ARRAYS)
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.take("I")
            if n_dims > GGML_MAX_DIMS:
                raise ValueError(f"tensor {name!r} claims {n_dims} dimensions")
            dims = tuple(cur.take("Q") for _ in range(n_dims))
            qtype, offset = cur.take("I"), cur.take("Q")
            infos.append((name, dims, qtype, offset))
        align = meta.get("general.alignment", 32)
        # llama.cpp rounds offsets up to the alignment: 0 would divide by zero, other
        # non-powers of two are refused by it only after printing to stderr.
        if type(align) is not int or not 0 < align <= MAX_ALIGNMENT or align & (align - 1):
            raise ValueError(f"general.alignment is {align!r}, not a power of two")
        data_start = -(-cur.pos // align) * align
    return meta, [TensorInfo(name, dims, data_start + offset + _nbytes(dims, qtype))
                  for name, dims, qtype, offset in infos]


def _nbytes(dims: tuple[int, ...], qtype: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def read_gguf(path: str | Path) -> GGUFSummary:
    """Parse the header; raise XGenError unless it is a complete XGen GGUF."""
    path = Path(path)
    if not path.is_file():
        raise XGenError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise XGenError(f"{path}: not a GGUF file (bad magic)")
    try:
        meta, ends = parse_header(path)
    except (ValueError, OSError, IndexError, struct.error) as exc:
        raise XGenError(f"{path}: damaged GGUF header ({exc})") from None
    size = path.stat().st_size
    end = max((t.end for t in ends), default=0)
    if end > size:
        raise XGenError(f"{path}: truncated ({size} bytes, tensors need {end}); convert or download it again")
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise XGenError(f"{path}: architecture is {arch!r}, not an XGen (llama) model")
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise XGenError(f"{path}: its tokenizer is not XGen's (GPT-2 BPE with XGen additions)")
    tokens = meta.get("tokenizer.ggml.tokens") or []
    for index, text in XGEN_TOKEN_CHECKS.items():
        if len(tokens) <= index or tokens[index] != text:
            raise XGenError(f"{path}: its vocabulary is not XGen's (token {index} differs)")
    problem = check_hyperparameters(meta, ends, len(tokens))
    if problem:
        raise XGenError(f"{path}: {problem}; convert or download it again")
    return GGUFSummary(
        path=path,
        architecture=arch,
        name=meta.get("general.name") or path.stem,
        context_length=int(meta.get("llama.context_length") or 0),
        file_type=int(meta.get("general.file_type") or 0),
        n_tokens=len(tokens),
        chat_template=meta.get("tokenizer.chat_template"),
        nbytes=size,
        n_layers=int(meta.get("llama.block_count") or 0),
        n_embd=int(meta.get("llama.embedding_length") or 0),
        n_head=int(meta.get("llama.attention.head_count") or 0),
        n_head_kv=int(meta.get("llama.attention.head_count_kv") or meta.get("llama.attention.head_count") or 0),
    )


def file_fingerprint(path: str | Path, sample: int = 1 << 20) -> str:
    """A cheap content identity of a model file: its size and the sha256 of its first and
    last MiB (the GGUF header, with the type of every tensor, and tensor data). Two files
    differing only in their name share it; two quantizations of one checkpoint do not."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        digest.update(f.read(sample))
        f.seek(max(0, size - sample))
        digest.update(f.read(sample))
    return f"{size}-{digest.hexdigest()[:32]}"
