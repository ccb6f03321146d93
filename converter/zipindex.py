"""Where every tensor of a torch `.bin` shard lives, read without torch and without the shard.

A torch checkpoint is a zip archive whose entries are stored uncompressed: `<stem>/data.pkl`
(the state dict, with each tensor's storage key, dtype, shape, stride and offset) and one
entry `<stem>/data/<key>` per storage, each with its CRC-32 in the central directory. Given
a `read(start, end)` over the file's bytes (a local file or HTTP range requests), this reads
the central directory and `data.pkl`, so each storage is one byte range: from its local
header (whose length is only known once read) to the next entry, fetched in one piece.

`data.pkl` is parsed by a restricted unpickler that only knows the few names a state dict
uses: nothing in it is executed, and any other global is refused.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.errors import XGenError, unsafe_pickle_error

try:  # ISA-L's CRC-32 is ~4x zlib's: 27.6 GB of shards cost ~7 s of CPU instead of ~30 s
    from isal.isal_zlib import crc32
except ImportError:  # same function, slower
    from zlib import crc32

ReadFn = Callable[[int, int], bytes]  # read(start, end) -> the bytes [start, end) of the file

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature ... name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"

# Legacy typed storages name their dtype; the data is little-endian (checked via `byteorder`).
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # bf16 has no numpy type: widened to f32 on read
    "DoubleStorage": np.dtype("<f8"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class ZipEntry:
    """One stored entry: its bytes lie in [start, end) with the local header first.

    `end` is where the next entry (or the central directory) begins, so one range
    request fetches the local header and the data together; `size` and `crc32` come
    from the central directory."""

    name: str
    start: int  # offset of the entry's local header
    end: int
    size: int
    crc32: int

    @property
    def span(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class TensorRef:
    name: str
    storage_key: str
    storage_type: str  # e.g. "FloatStorage"
    offset: int  # in elements, into the storage
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.storage_type]

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class ShardIndex:
    size: int  # bytes of the whole shard file
    prefix: str  # the archive's top folder, e.g. "pytorch_model-00001-of-00003"
    entries: dict[str, ZipEntry]  # storage key -> its zip entry
    tensors: dict[str, TensorRef]  # tensor name -> where it lives

    def entry(self, ref: TensorRef) -> ZipEntry:
        return self.entries[ref.storage_key]


class _RangeFile(io.RawIOBase):
    """A seekable read-only file over `read(start, end)`, for zipfile's directory parsing."""

    def __init__(self, read: ReadFn, size: int):
        self._read, self._size, self._pos = read, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        end = min(self._size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        data = self._read(self._pos, end)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _StateDictUnpickler(pickle.Unpickler):
    """Rebuilds a state dict of TensorRefs; refuses every global a state dict does not use."""

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, _numel = pid
        return (storage_type, str(key))

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return dict
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise UnsafePickle(f"{module}.{name}")


class UnsafePickle(pickle.UnpicklingError):
    """data.pkl names something other than tensor code (a malicious or foreign pickle)."""


def _rebuild_tensor(storage, offset, shape, stride, *_unused):
    storage_type, key = storage
    return TensorRef("", key, storage_type, int(offset), tuple(int(s) for s in shape),
                     tuple(int(s) for s in stride))


def read_index(read: ReadFn, size: int, label: str) -> ShardIndex:
    """Index one shard: its central directory and data.pkl (a few range reads)."""
    try:
        with zipfile.ZipFile(io.BufferedReader(_RangeFile(read, size), buffer_size=1 << 16)) as archive:
            infos = archive.infolist()
        pkl_info = next((i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"), None)
        if pkl_info is None:
            raise XGenError(f"{label}: no data.pkl in the archive; not a torch checkpoint")
        prefix = pkl_info.filename[: -len("data.pkl")]
        by_name = {i.filename: i for i in infos}
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise XGenError(f"{label}: entry {info.filename} is compressed; torch writes stored entries")
        ends = _entry_ends(infos, size)  # the last entry is bounded by the file's end
        entry = lambda info: ZipEntry(info.filename, info.header_offset, ends[info.filename],  # noqa: E731
                                      info.file_size, info.CRC)
        pickled = read_entry(read, entry(pkl_info), label)
        state = _StateDictUnpickler(io.BytesIO(pickled)).load()
    except UnsafePickle as exc:
        raise unsafe_pickle_error(label, str(exc)) from None
    except (zipfile.BadZipFile, pickle.UnpicklingError, struct.error, EOFError, ValueError, TypeError) as exc:
        raise XGenError(f"{label}: not a readable torch checkpoint ({exc}); it may be truncated or corrupt") from None
    if not isinstance(state, dict):
        raise XGenError(f"{label}: expected a state dict of tensors")
    if f"{prefix}byteorder" in by_name:
        order = read_entry(read, entry(by_name[f"{prefix}byteorder"]), label)
        if order != b"little":
            raise XGenError(f"{label}: written {order.decode(errors='replace')}-endian; only little-endian is read")
    tensors: dict[str, TensorRef] = {}
    entries: dict[str, ZipEntry] = {}
    for name, ref in state.items():
        if not isinstance(ref, TensorRef):
            raise XGenError(f"{label}: {name} is not a tensor")
        info = by_name.get(f"{prefix}data/{ref.storage_key}")
        if info is None:
            raise XGenError(f"{label}: storage {ref.storage_key} of {name} is missing from the archive")
        tensors[name] = TensorRef(name, ref.storage_key, ref.storage_type, ref.offset, ref.shape, ref.stride)
        entries[ref.storage_key] = entry(info)
    return ShardIndex(size, prefix.rstrip("/"), entries, tensors)


def _entry_ends(infos: list[zipfile.ZipInfo], limit: int) -> dict[str, int]:
    starts = sorted((i.header_offset, i.filename) for i in infos)
    ends = {}
    for (_, name), (nxt, _) in zip(starts, starts[1:] + [(limit, "")]):
        ends[name] = nxt
    return ends


def entry_data(entry: ZipEntry, span, label: str) -> memoryview:
    """The data of `entry` inside its fetched span (local header first), checked."""
    view = memoryview(span)
    fields = _LOCAL_HEADER.unpack_from(view, 0) if len(view) >= _LOCAL_HEADER.size else None
    if fields is None or fields[0] != _LOCAL_SIGNATURE:
        raise ChecksumError(f"{label}: no local header for {entry.name} where the archive says; corrupt transfer")
    first = _LOCAL_HEADER.size + fields[-2] + fields[-1]
    data = view[first: first + entry.size]
    check_entry(entry, data, label)
    return data


def read_entry(read: ReadFn, entry: ZipEntry, label: str) -> bytes:
    return bytes(entry_data(entry, read(entry.start, entry.end), label))


def check_entry(entry: ZipEntry, data, label: str) -> None:
    """Size and CRC-32 of an entry's bytes against the central directory."""
    if len(data) != entry.size:
        raise ChecksumError(f"{label}: {entry.name} has {len(data)} bytes, the archive says {entry.size}")
    if crc32(data) != entry.crc32:
        raise ChecksumError(f"{label}: {entry.name} fails its CRC-32 check")


class ChecksumError(XGenError):
    """Bytes that do not match the archive's size or CRC-32 (a corrupt transfer or file)."""


def tensor_array(ref: TensorRef, storage) -> np.ndarray:
    """The f32 numpy array of `ref` from its whole storage's bytes (no copy when it can)."""
    flat = np.frombuffer(storage, dtype=ref.dtype)
    itemsize = ref.dtype.itemsize
    if ref.offset + ref.numel > flat.size and ref.numel:
        raise XGenError(f"{ref.name}: shape {list(ref.shape)} does not fit its storage")
    contiguous = tuple(int(np.prod(ref.shape[i + 1:], dtype=np.int64)) for i in range(len(ref.shape)))
    if ref.stride == contiguous:
        array = flat[ref.offset: ref.offset + ref.numel].reshape(ref.shape)
    else:
        array = np.lib.stride_tricks.as_strided(flat[ref.offset:], ref.shape,
                                                tuple(s * itemsize for s in ref.stride))
    if ref.storage_type == "BFloat16Storage":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array if array.dtype == np.float32 else array.astype(np.float32)
