"""Damaged and foreign GGUF files are refused with one line before llama.cpp ever sees them.

llama.cpp prints to stderr and may abort the whole process on a malformed file, so every
bad file here must be stopped by models.gguf_file.read_gguf: `xgen verify FILE` exits 1
with one `error:` line, load_llama raises XGenError, and llama_cpp.Llama is never built.
"""

from __future__ import annotations

import os
import random
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.cli import main
from models.errors import XGenError
from models.gguf_file import parse_header, read_gguf
from models.llama_cpp_utils import load_llama


@pytest.fixture(scope="module")
def model(converted) -> Path:
    return converted("q8_0")


@pytest.fixture(scope="module")
def layout(model) -> dict[str, int]:
    """Where things are in the real file: each KV field, the tensor data, the file's end.

    Walked here with struct (gguf.GGUFReader takes seconds on a 51k-token vocabulary).
    """
    data = model.read_bytes()
    pos = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(vtype: int) -> None:
        nonlocal pos
        if vtype == 8:
            pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        elif vtype == 9:
            item, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(count) if item in (8, 9) else ():
                skip(item)
            pos += 0 if item in (8, 9) else count * sizes[item]
        else:
            pos += sizes[vtype]

    where = {}
    for _ in range(n_kv):
        where_key = pos
        length = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8 : pos + 8 + length].decode()
        pos += 8 + length
        vtype = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        if key == "general.architecture":
            where["arch value"] = pos + 8
        where[key] = where_key
        skip(vtype)
    for _ in range(n_tensors):
        skip(8)
        pos += 8 * struct.unpack_from("<I", data, pos)[0] + 4 + 4 + 8
    where["data"] = -(-pos // 32) * 32
    where["size"] = len(data)
    return where


def string_kv(key: str, value: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<IQ", 8, len(value)) + value


def gguf_bytes(kvs: list[bytes], version: int = 3, n_tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + b"".join(kvs)


def write_with_vocab(path: Path, arch: str, tokens: list[str]) -> Path:
    """A complete GGUF made by gguf's own writer: the given architecture and token list."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("foreign")
    writer.add_context_length(512)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# name -> (how to make the file from the real one, what the one-line error must say)
def bad_files(folder: Path, model: Path, where: dict[str, int]) -> dict[str, tuple[Path, str]]:
    data = model.read_bytes()
    rng = random.Random(1234)
    made: dict[str, tuple[bytes | Path, str]] = {
        "empty": (b"", "bad magic"),
        "cut inside the fixed header": (data[:13], "damaged GGUF header"),
        "cut inside the first key": (data[:40], "damaged GGUF header"),
        "cut inside the chat template": (data[: where["tokenizer.chat_template"] + 200], "damaged GGUF header"),
        "cut inside the token list": (data[: where["tokenizer.ggml.tokens"] + 300_000], "damaged GGUF header"),
        "cut inside the merges": (data[: where["tokenizer.ggml.merges"] + 100_000], "damaged GGUF header"),
        "cut inside the tensor infos": (data[: where["data"] - 64], "damaged GGUF header"),
        "cut where the tensor data starts": (data[: where["data"]], "truncated"),
        "cut inside the tensor data": (data[: (where["data"] + where["size"]) // 2], "truncated"),
        "last byte missing": (data[:-1], "truncated"),
        "bad magic": (b"GGML" + data[4:], "not a GGUF file (bad magic)"),
        "version 1": (data[:4] + struct.pack("<I", 1) + data[8:], "unsupported GGUF version 1"),
        "version 99": (data[:4] + struct.pack("<I", 99) + data[8:], "unsupported GGUF version 99"),
        "random bytes": (rng.randbytes(1 << 20), "bad magic"),
        "magic then random bytes": (b"GGUF" + struct.pack("<I", 3) + rng.randbytes(1 << 20), "damaged GGUF header"),
        "huge counts": (gguf_bytes([], n_tensors=1 << 62)[:-8] + struct.pack("<Q", 1 << 62), "damaged GGUF header"),
        "unknown value type": (gguf_bytes([struct.pack("<Q", 1) + b"a" + struct.pack("<I", 77)]),
                               "unknown GGUF value type 77"),
    }
    # Another architecture, same file otherwise: "llama" -> "qwen2" in place.
    arch = where["arch value"]
    assert data[arch : arch + 5] == b"llama"
    made["architecture qwen2"] = (data[:arch] + b"qwen2" + data[arch + 5 :], "architecture is 'qwen2'")
    # Another vocabulary: XGen's <fim_prefix> (token 50295) spelled differently, same length.
    needle = struct.pack("<Q", 12) + b"<fim_prefix>"
    at = data.index(needle, where["tokenizer.ggml.tokens"], where["tokenizer.ggml.token_type"])
    swapped = data[:at] + struct.pack("<Q", 12) + b"<fim_prefiy>" + data[at + len(needle) :]
    made["one XGen token differs"] = (swapped, "vocabulary is not XGen's (token 50295 differs)")
    tokens = parse_header(model)[0]["tokenizer.ggml.tokens"]
    made["gpt2 architecture by GGUFWriter"] = (
        write_with_vocab(folder / "gpt2-arch.gguf", "gpt2", tokens), "architecture is 'gpt2'")
    made["plain GPT-2 vocabulary"] = (
        write_with_vocab(folder / "gpt2-vocab.gguf", "llama", tokens[:50257]),
        "vocabulary is not XGen's (token 50257 differs)")
    made["tokenizer model not gpt2"] = (
        gguf_bytes([string_kv("general.architecture", b"llama"), string_kv("tokenizer.ggml.model", b"llama")]),
        "tokenizer is not XGen's")
    # Crafted headers: arrays nested 5000 deep (a RecursionError escaped read_gguf), a token
    # list of 8M single bytes (read one by one: 16 s), an array counted past the file's end.
    nested = (struct.pack("<Q", 1) + b"x" + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 5000
              + struct.pack("<IQ", 4, 1) + struct.pack("<I", 7))
    made["arrays nested 5000 deep"] = (gguf_bytes([nested]), "damaged GGUF header")
    key = b"tokenizer.ggml.tokens"
    bytes_as_tokens = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 0, 8 << 20) + bytes(8 << 20)
    made["token list of 8M bytes"] = (gguf_bytes([bytes_as_tokens]), "damaged GGUF header")
    key = b"tokenizer.ggml.merges"
    longer_than_file = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, 1 << 60)
    made["array longer than the file"] = (gguf_bytes([longer_than_file]), "damaged GGUF header")

    files = {}
    for i, (name, (content, message)) in enumerate(made.items()):
        if isinstance(content, Path):
            files[name] = (content, message)
        else:
            path = folder / f"bad-{i:02d}.gguf"
            path.write_bytes(content)
            files[name] = (path, message)
    return files


@pytest.fixture(scope="module")
def bad(tmp_path_factory, model, layout):
    return bad_files(tmp_path_factory.mktemp("bad-gguf"), model, layout)


BAD_NAMES = [
    "empty", "cut inside the fixed header", "cut inside the first key", "cut inside the chat template",
    "cut inside the token list", "cut inside the merges", "cut inside the tensor infos",
    "cut where the tensor data starts", "cut inside the tensor data", "last byte missing", "bad magic",
    "version 1", "version 99", "random bytes", "magic then random bytes", "huge counts",
    "unknown value type", "architecture qwen2", "one XGen token differs", "gpt2 architecture by GGUFWriter",
    "plain GPT-2 vocabulary", "tokenizer model not gpt2", "arrays nested 5000 deep",
    "token list of 8M bytes", "array longer than the file",
]


@pytest.fixture
def llama_never_built(monkeypatch):
    """Fail the test if llama.cpp is handed a file."""
    import llama_cpp

    calls = []

    def refuse(*args, **kwargs):
        calls.append(kwargs.get("model_path"))
        raise AssertionError(f"llama.cpp was handed {kwargs.get('model_path')}")

    monkeypatch.setattr(llama_cpp, "Llama", refuse)
    yield calls
    assert calls == []


def test_every_case_is_listed(bad):
    assert sorted(bad) == sorted(BAD_NAMES)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_gguf_is_refused_in_one_line(bad, name, llama_never_built):
    path, message = bad[name]
    t0 = time.perf_counter()
    with pytest.raises(XGenError) as excinfo:
        load_llama(path)
    assert time.perf_counter() - t0 < 5, "read_gguf took too long"
    text = str(excinfo.value)
    assert "\n" not in text and message in text and str(path) in text, text

    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {text}"], result.output


def test_the_real_file_passes(model, llama_never_built):
    """The control: the undamaged file gets through read_gguf (and only then to llama.cpp)."""
    summary = read_gguf(model)
    assert (summary.architecture, summary.n_tokens, summary.context_length) == ("llama", 51200, 512)
    with pytest.raises(AssertionError, match="llama.cpp was handed"):
        load_llama(model)
    llama_never_built.clear()


# -- random damage to a real header ------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, model):
    """A copy of the real file to damage in place (and restore) example after example."""
    path = tmp_path_factory.mktemp("mutated") / "m.gguf"
    path.write_bytes(model.read_bytes())
    return path


HEADER_BYTES = st.integers(0, 255)


@settings(max_examples=40, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_header_never_escapes_as_another_exception(scratch, layout, data):
    # Most damage lands where the structure is (counts, types, lengths of the first keys,
    # the token list's header); the rest anywhere up to the tensor data.
    near = st.integers(0, layout["tokenizer.ggml.tokens"] + 40)
    anywhere = st.integers(0, layout["data"] - 1)
    edits = data.draw(st.lists(st.tuples(st.one_of(near, anywhere), HEADER_BYTES), min_size=1, max_size=8))
    fd = os.open(scratch, os.O_RDWR)
    try:
        originals = [(offset, os.pread(fd, 1, offset)) for offset, _ in edits]
        for offset, value in edits:
            os.pwrite(fd, bytes([value]), offset)
        try:
            read_gguf(scratch)
        except XGenError as exc:
            assert "\n" not in str(exc)
    finally:
        for offset, original in reversed(originals):
            os.pwrite(fd, original, offset)
        os.close(fd)
