"""The shard index read without torch gives exactly what torch.load gives, and trusts nothing."""

from __future__ import annotations

import io
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch

from converter.zipindex import ChecksumError, entry_data, read_index, tensor_array
from models.errors import XGenError


def saved(tensors: dict, tmp_path, name="shard.bin") -> bytes:
    path = tmp_path / name
    torch.save(tensors, path)
    return path.read_bytes()


def index_of(data: bytes):
    return read_index(lambda a, b: data[a:b], len(data), "shard.bin")


def test_every_tensor_matches_torch_load(tmp_path):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=gen)
    tensors = {
        "f32": torch.randn(4, 256, generator=gen),
        "f16": torch.randn(3, 64, generator=gen).half(),
        "bf16": torch.randn(5, 32, generator=gen).bfloat16(),
        "transposed": torch.randn(16, 8, generator=gen).t(),  # non-contiguous strides
        "view": base[2:5],  # an offset into a storage shared with "base"
        "base": base,
        "vector": torch.randn(7, generator=gen),
    }
    data = saved(tensors, tmp_path)
    index = index_of(data)
    assert set(index.tensors) == set(tensors)
    for name, ref in index.tensors.items():
        entry = index.entry(ref)
        array = tensor_array(ref, entry_data(entry, data[entry.start:entry.end], "shard.bin"))
        expected = tensors[name].float().numpy()
        assert array.dtype == np.float32 and array.shape == expected.shape, name
        assert np.array_equal(array, expected), name
    # Each storage is one byte range holding its local header then exactly its data.
    assert index.entry(index.tensors["view"]) == index.entry(index.tensors["base"])


def test_crc_and_size_are_checked(tmp_path):
    data = bytearray(saved({"w": torch.ones(64, 64)}, tmp_path))
    index = index_of(bytes(data))
    entry = index.entry(index.tensors["w"])
    span = bytearray(data[entry.start:entry.end])
    entry_data(entry, span, "x")  # intact
    span[len(span) - 16 - entry.size // 2] ^= 0x01  # one flipped bit mid-data (a 16-byte descriptor follows)
    with pytest.raises(ChecksumError, match="CRC-32"):
        entry_data(entry, span, "x")
    with pytest.raises(ChecksumError, match="bytes"):
        entry_data(entry, data[entry.start:entry.end - 100], "x")
    with pytest.raises(ChecksumError, match="local header"):
        entry_data(entry, b"\0" * entry.span, "x")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.bin"
    torch.save({"w": Evil()}, path)  # what a malicious upload would be: a real torch archive
    data = path.read_bytes()
    with pytest.raises(XGenError) as streamed:
        index_of(data)
    # The same refusal when the shard is read locally (torch.load, weights only).
    from models.checkpoint import load_pickle_shard

    with pytest.raises(XGenError) as local:
        load_pickle_shard(path)
    for refusal in (str(streamed.value), str(local.value)):
        # Refused as unsafe, naming what it calls; never "truncated ... download it again",
        # and never PyTorch's advice to load it with weights_only=False.
        assert re.search(r"refused as unsafe: its pickle calls ((__builtin__|builtins)\.)?print,", refusal), refusal
        assert "truncated" not in refusal and "weights_only" not in refusal and "\n" not in refusal


def test_truncated_and_non_zip_files_are_one_line_errors(tmp_path):
    data = saved({"w": torch.ones(8, 8)}, tmp_path)
    with pytest.raises(XGenError, match="truncated or corrupt"):
        index_of(data[: len(data) // 2])
    with pytest.raises(XGenError, match="not a readable torch checkpoint"):
        index_of(b"this is not a zip archive at all" * 100)
    compressed = io.BytesIO()
    with zipfile.ZipFile(compressed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x/data.pkl", pickle.dumps({}, protocol=2))
    with pytest.raises(XGenError, match="compressed"):
        index_of(compressed.getvalue())
