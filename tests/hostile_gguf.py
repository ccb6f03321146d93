"""A GGUF mutator: a real file's header with one metadata value replaced, of any type.

Used by the reliability tests (fixed hostile cases and a hypothesis fuzzer) to check that
models.gguf_file.read_gguf refuses every value llama.cpp would choke on. The file is
rebuilt, not patched in place, so a value may change its type and length; the tensor
data keeps its 32-byte alignment.
"""

from __future__ import annotations

import struct

SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9
ALIGNMENT = 32


def _skip_value(data: bytes, pos: int, vtype: int) -> int:
    if vtype == STRING:
        return pos + 8 + struct.unpack_from("<Q", data, pos)[0]
    if vtype == ARRAY:
        item, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if item in (STRING, ARRAY):
            for _ in range(count):
                pos = _skip_value(data, pos, item)
            return pos
        return pos + count * struct.calcsize("<" + SCALAR_FORMATS[item])
    return pos + struct.calcsize("<" + SCALAR_FORMATS[vtype])


def split_header(data: bytes) -> tuple[dict[str, bytes], bytes, bytes]:
    """(each key's whole encoded entry, the tensor infos, the tensor data) of a GGUF file."""
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos, entries = 24, {}
    for _ in range(n_kv):
        start = pos
        length = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8 : pos + 8 + length].decode()
        vtype = struct.unpack_from("<I", data, pos + 8 + length)[0]
        pos = _skip_value(data, pos + 12 + length, vtype)
        entries[key] = data[start:pos]
    infos_start = pos
    for _ in range(n_tensors):
        pos = _skip_value(data, pos, STRING)
        n_dims = struct.unpack_from("<I", data, pos)[0]
        pos += 4 + 8 * n_dims + 4 + 8
    infos = data[infos_start:pos]
    data_start = -(-pos // ALIGNMENT) * ALIGNMENT
    return entries, infos, data[data_start:]


def encode_value(vtype: int, value) -> bytes:
    """GGUF's encoding of one value of a scalar type or a string (type included)."""
    if vtype == STRING:
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        return struct.pack("<IQ", STRING, len(raw)) + raw
    return struct.pack("<I", vtype) + struct.pack("<" + SCALAR_FORMATS[vtype], value)


def with_value(data: bytes, key: str, vtype: int, value) -> bytes:
    """The file `data` with `key` set to `value` of GGUF type `vtype` (added if absent)."""
    entries, infos, tensor_data = split_header(data)
    entries[key] = struct.pack("<Q", len(key)) + key.encode() + encode_value(vtype, value)
    n_tensors = struct.unpack_from("<Q", data, 8)[0]
    header = data[:8] + struct.pack("<QQ", n_tensors, len(entries)) + b"".join(entries.values()) + infos
    return header + bytes(-len(header) % ALIGNMENT) + tensor_data


def with_tensor_dims(data: bytes, n_dims: int) -> bytes:
    """The file `data` with its first tensor claiming `n_dims` dimensions (the rest unchanged)."""
    entries, infos, tensor_data = split_header(data)
    name_end = 8 + struct.unpack_from("<Q", infos, 0)[0]
    old_dims = struct.unpack_from("<I", infos, name_end)[0]
    rest = infos[name_end + 4 + 8 * old_dims :]
    dims = struct.pack("<I", n_dims) + struct.pack("<Q", 1) * min(n_dims, 64)
    header = data[:24] + b"".join(entries.values()) + infos[:name_end] + dims + rest
    return header + bytes(-len(header) % ALIGNMENT) + tensor_data
