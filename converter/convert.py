"""HF XGen checkpoint -> GGUF, in one streaming pass.

Plan every tensor from the shard headers (name, shape, target type, size), write the
GGUF header, then read, transform, quantize and write one tensor at a time. Peak memory
is about one f32 tensor plus its quantized copy, whatever the depth of the model.
"""

from __future__ import annotations

import errno
import functools
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

from converter.quant import (FILE_TYPES, FileType, get_file_type, quantization_error, quantize, tensor_nbytes,
                             tensor_type)
from converter.tensors import TensorSource, iter_gguf_arrays, match_tensors
from converter.vocab import build_gguf_vocab, write_vocab
from models.atomic import atomic_output, output_target
from models.checkpoint import CheckpointReader, find_checkpoint
from models.config import ModelArgs
from models.errors import XGenError
from models.registry import XGEN_CHAT_TEMPLATE, Variant
from models.tokenizer import XGenTokenizer

# What estimate_output_bytes does not count item by item: the small metadata keys (name,
# licence, chat template, hyperparameters: a few KB). A flat 64 MB margin here refused
# a 34 MB output with 90 MB free.
METADATA_SLACK = 256 << 10
GGUF_ALIGNMENT = 32


@dataclass(frozen=True)
class PlannedTensor:
    source: TensorSource
    qtype: Q
    nbytes: int


@dataclass
class ConversionResult:
    path: Path
    file_type: str
    seconds: float
    nbytes: int
    tensors: list[PlannedTensor] = field(default_factory=list)
    errors: dict[str, float] = field(default_factory=dict)  # GGUF name -> NMSE, with measure_error

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.qtype.name] = counts.get(t.qtype.name, 0) + 1
        return counts


@dataclass(frozen=True)
class Progress:
    """Where a conversion is: tensors written, source bytes read (or fetched), the tensor just done."""

    tensors_done: int
    tensors_total: int
    bytes_done: int
    bytes_total: int
    tensor: PlannedTensor | None = None


ProgressFn = Callable[[Progress], None]


def plan_tensors(sources: list[TensorSource], file_type: FileType, n_layers: int) -> list[PlannedTensor]:
    planned = []
    for s in sources:
        qtype = tensor_type(s.gguf_name, s.shape, file_type, n_layers)
        planned.append(PlannedTensor(s, qtype, tensor_nbytes(s.shape, qtype)))
    return planned


def convert(src: str | Path, out: str | Path, file_type: str = "q4_k_m", *, force: bool = False,
            threads: int | None = None, variant: Variant | None = None, name: str | None = None,
            progress: ProgressFn | None = None, measure_error: bool = False,
            notify: Callable[[str], None] | None = None) -> ConversionResult:
    """Convert the checkpoint folder `src` into the GGUF file `out`.

    measure_error: also compute each tensor's quantization error (ConversionResult.errors),
    which dequantizes everything once more in numpy (slower; off by default).
    notify: told one-line notes (e.g. a context length taken from the registry)."""
    started = time.perf_counter()
    ftype = get_file_type(file_type)
    out = Path(out)
    output_target(out, force=force)  # a folder, a device, an existing file: refused before any work
    args = checked_args(ModelArgs.from_folder(src), str(src), variant, notify)
    reader = CheckpointReader(find_checkpoint(src))
    sources = match_tensors({n: reader.shape(n) for n in reader.names()}, args)
    planned = plan_tensors(sources, ftype, args.n_layers)
    check_free_space(out.parent if str(out.parent) else Path("."),
                     estimate_output_bytes(planned, xgen_vocab(args.vocab_size)))
    source_bytes = [4 * int(np.prod(s.shape)) for s in sources]
    arrays = iter_gguf_arrays(sources, reader.get, args)

    with disk_errors(out), atomic_output(out, force=force) as tmp:
        header_end = write_header(tmp, args, ftype, variant, name or Path(src).name, planned)
        with open(tmp, "r+b") as f:
            f.seek(header_end)
            sink = TensorSink(f, planned, threads, measure_error)
            for done, (source, data) in enumerate(arrays, 1):
                p = sink.write(data)
                del data
                if progress:
                    progress(Progress(done, len(planned), sum(source_bytes[:done]), sum(source_bytes), p))
    return ConversionResult(out, ftype.name, time.perf_counter() - started, out.stat().st_size, planned, sink.errors)


def checked_args(args: ModelArgs, src: str, variant: Variant | None,
                 notify: Callable[[str], None] | None = None) -> ModelArgs:
    """Reject a vocabulary too small for XGen; give a published variant its training context."""
    if args.vocab_size < 50313:
        raise XGenError(f"{src}/config.json: vocab_size {args.vocab_size} is smaller than XGen's 50313 tokens")
    args, note = training_context(args, variant)
    if note and notify:
        notify(note)
    return args


def training_context(args: ModelArgs, variant: Variant | None) -> tuple[ModelArgs, str | None]:
    """A published variant whose config.json under-reports its context gets the registry's.

    XGen-8K's config.json says less than the 8,192 tokens it was trained for (a config
    without the field reads as 2,048, transformers' default); written as is, llama.cpp and
    the assistant would default to a quarter of the model's context."""
    if variant is None or args.max_seq_len >= variant.context_length:
        return args, None
    note = (f"config.json gives a context of {args.max_seq_len} tokens; {variant.name} was trained for "
            f"{variant.context_length}, which the GGUF records")
    return replace(args, max_seq_len=variant.context_length), note


def write_header(path: Path, args: ModelArgs, ftype: FileType, variant: Variant | None, name: str,
                 planned: list[PlannedTensor]) -> int:
    """Write the GGUF header, metadata, vocabulary and tensor infos; returns where they end."""
    vocab = xgen_vocab(args.vocab_size)
    writer = gguf.GGUFWriter(path, "llama")
    try:
        _write_metadata(writer, args, ftype, variant, name)
        write_vocab(writer, vocab)
        for p in planned:
            _add_tensor_info(writer, p)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.flush()
    finally:
        writer.close()
    return path.stat().st_size


class TensorSink:
    """Quantizes and appends tensors in plan order, padded as gguf's writer pads them."""

    def __init__(self, f, planned: list[PlannedTensor], threads: int | None, measure_error: bool = False,
                 first: int = 0):
        self.f, self.planned, self.threads = f, planned, threads
        self.measure_error = measure_error
        self.next = first
        self.errors: dict[str, float] = {}
        self.last_crc = 0

    def write(self, data: np.ndarray, quantized: np.ndarray | None = None) -> PlannedTensor:
        """Append the next planned tensor (`quantized`: its bytes, when the caller made them)."""
        p = self.planned[self.next]
        if quantized is None:
            quantized = quantize(data, p.qtype, self.threads)
        if quantized.nbytes != p.nbytes:
            raise RuntimeError(f"{p.source.gguf_name}: {quantized.nbytes} bytes quantized, {p.nbytes} planned")
        if self.measure_error:
            self.errors[p.source.gguf_name] = quantization_error(data, quantized, p.qtype)
        before = _pad(self.f.tell())
        self.f.write(before)
        quantized.tofile(self.f)
        after = _pad(quantized.nbytes)
        self.f.write(after)
        self.last_crc = zlib.crc32(after, zlib.crc32(quantized, zlib.crc32(before)))
        self.next += 1
        return p


def _pad(n: int, align: int = gguf.GGUF_DEFAULT_ALIGNMENT) -> bytes:
    return bytes(-n % align)


@contextmanager
def disk_errors(out: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if _out_of_space(exc):
            raise XGenError(f"{out.parent}: file too large for this file system or disk full while writing "
                            "the GGUF; nothing was kept") from None
        # A read-only file system, no permission...: name the file (the output, not its .partial).
        where = exc.filename if exc.filename and not str(exc.filename).endswith(".partial") else out
        raise XGenError(f"{where}: {exc.strerror or exc}; nothing was kept") from None


def _out_of_space(exc: OSError) -> bool:
    """ENOSPC (disk full), EDQUOT (quota) or EFBIG (file size limit, FAT32's 4 GiB)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    # numpy's tofile (how gguf writes tensors) reports a short write without an errno:
    # "<n> requested and <m> written".
    return exc.errno is None and "requested and" in str(exc) and "written" in str(exc)


def _add_tensor_info(writer: gguf.GGUFWriter, p: PlannedTensor) -> None:
    shape = p.source.shape
    if p.qtype == Q.F32:
        writer.add_tensor_info(p.source.gguf_name, shape, np.dtype(np.float32), p.nbytes)
    elif p.qtype == Q.F16:
        writer.add_tensor_info(p.source.gguf_name, shape, np.dtype(np.float16), p.nbytes)
    else:
        # Quantized data is raw bytes: the writer takes the byte shape and the type.
        byte_shape = (*shape[:-1], tensor_nbytes((1, shape[-1]), p.qtype))
        writer.add_tensor_info(p.source.gguf_name, byte_shape, np.dtype(np.uint8), p.nbytes, raw_dtype=p.qtype)


def _write_metadata(writer: gguf.GGUFWriter, args: ModelArgs, ftype: FileType,
                    variant: Variant | None, name: str) -> None:
    writer.add_name(variant.name if variant else name)
    if variant:
        writer.add_license(variant.licence)
        writer.add_source_repo_url(f"https://huggingface.co/{variant.hub_id}")
    writer.add_file_type(int(ftype.ftype))
    if ftype.base not in (Q.F32, Q.F16):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(args.max_seq_len)
    writer.add_embedding_length(args.dim)
    writer.add_block_count(args.n_layers)
    writer.add_feed_forward_length(args.intermediate_size)
    writer.add_rope_dimension_count(args.head_dim)
    writer.add_head_count(args.n_heads)
    writer.add_head_count_kv(args.n_kv_heads)
    writer.add_layer_norm_rms_eps(args.norm_eps)
    writer.add_rope_freq_base(args.rope_theta)
    writer.add_vocab_size(args.vocab_size)
    if variant is None or variant.prompt_style == "chat":
        # Unknown local folders get the template too: it only formats chats, and
        # base-model users drive the model with raw completions anyway.
        writer.add_chat_template(XGEN_CHAT_TEMPLATE)


@functools.lru_cache(maxsize=2)
def xgen_vocab(vocab_size: int):
    """XGen's GGUF vocabulary, built once (the free-space estimate and the header both use it)."""
    return build_gguf_vocab(XGenTokenizer(allow_download=False), vocab_size)


def estimate_output_bytes(planned: list[PlannedTensor], vocab) -> int:
    """The GGUF's size, from what it will hold: each tensor's data in its target type
    (exact, padded to the alignment), its tensor-info record, the vocabulary arrays
    (tokens, types, merges) and METADATA_SLACK for the other keys. It is a little over
    the real size, never under it (tests/test_convert_errors.py checks both)."""
    size = 4 + 4 + 8 + 8  # magic, version, tensor count, key count
    size += sum(8 + len(t.encode("utf-8")) for t in vocab.tokens)  # each token: length + bytes
    size += 4 * len(vocab.token_types)
    size += sum(8 + len(m.encode("utf-8")) for m in vocab.merges)
    size += 3 * (8 + 32 + 4 + 4 + 8)  # the three arrays' keys and headers
    for p in planned:  # name, dimension count, dimensions, type, offset
        size += 8 + len(p.source.gguf_name.encode("utf-8")) + 4 + 8 * len(p.source.shape) + 4 + 8
    size += GGUF_ALIGNMENT  # padding before the tensor data
    size += sum(-(-p.nbytes // GGUF_ALIGNMENT) * GGUF_ALIGNMENT for p in planned)
    return size + METADATA_SLACK


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder if folder.exists() else Path(".")).free
    if free < needed:
        raise XGenError(f"{folder}: {_size(needed)} needed for the output, only {_size(free)} free")


__all__ = ["FILE_TYPES", "ConversionResult", "PlannedTensor", "Progress", "convert", "estimate_output_bytes",
           "plan_tensors"]
