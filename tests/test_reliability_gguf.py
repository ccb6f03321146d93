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
from assistant.fit import GiB
from models.errors import XGenError
from models.gguf_file import parse_header, read_gguf
from models.llama_cpp_utils import load_llama
from tests.hostile_gguf import with_tensor_dims, with_value


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


U32, I32, F32, U64, STR = 4, 5, 6, 10, 8
# name -> (key, GGUF type, value, what the one-line error must say)
HOSTILE_VALUES = {
    "context length 2^63": ("llama.context_length", U64, 2**63, "llama.context_length is 9,223,372,036,854,775,808"),
    "context length 10^12": ("llama.context_length", U64, 10**12, "outside 1-1,048,576"),
    "block count 1000": ("llama.block_count", U32, 1000, "llama.block_count is 1,000 but the file holds 6 layers"),
    "block count 2^31": ("llama.block_count", U32, 2**31, "llama.block_count is 2,147,483,648, outside"),
    "block count 1 of 2": ("llama.block_count", U32, 1, "llama.block_count is 1 but the file holds 6 layers"),
    "NaN rms epsilon": ("llama.attention.layer_norm_rms_epsilon", F32, float("nan"), "epsilon is nan, not a number"),
    "negative rms epsilon": ("llama.attention.layer_norm_rms_epsilon", F32, -1e-6, "not a number between 0 and 1"),
    "infinite rope base": ("llama.rope.freq_base", F32, float("inf"), "llama.rope.freq_base is inf"),
    "alignment 0": ("general.alignment", U32, 0, "general.alignment is 0, not a power of two"),
    "alignment 48": ("general.alignment", U32, 48, "general.alignment is 48, not a power of two"),
    "context length as text": ("llama.context_length", STR, "512", "llama.context_length is '512', not a whole"),
    "width as text": ("llama.embedding_length", STR, "wide", "llama.embedding_length is 'wide', not a whole"),
    "negative head count": ("llama.attention.head_count", I32, -4, "llama.attention.head_count is -4, outside"),
    "heads not dividing the width": ("llama.attention.head_count", U32, 3, "3 heads (4 for keys and values) do not"),
    "width unlike the tensors": ("llama.embedding_length", U32, 512, "tensor token_embd.weight is [256, 51200]"),
    "feed-forward unlike the tensors": ("llama.feed_forward_length", U32, 4096, "tensor blk.0.ffn_gate.weight is"),
    "vocab size unlike the list": ("llama.vocab_size", U32, 50000, "llama.vocab_size is 50,000 but the vocabulary"),
    "end of text id past the vocabulary": ("tokenizer.ggml.eos_token_id", U32, 10**6, "eos_token_id is 1000000"),
}


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

    # Hyper-parameters llama.cpp trusts (issue 20): each once crashed, hung or aborted it.
    for name, (key, vtype, value, message) in HOSTILE_VALUES.items():
        made[name] = (with_value(data, key, vtype, value), message)
    made["a tensor of 1000 dimensions"] = (with_tensor_dims(data, 1000), "claims 1000 dimensions")

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
    "token list of 8M bytes", "array longer than the file", *HOSTILE_VALUES, "a tensor of 1000 dimensions",
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


# -- hostile hyper-parameter values, fuzzed ----------------------------------------------

# Keys whose value the tensors fix: any other value must be refused.
SHAPE_KEYS = ["llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
              "llama.attention.head_count", "llama.attention.head_count_kv", "llama.vocab_size"]
FREE_KEYS = ["llama.context_length", "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base",
             "llama.rope.dimension_count", "general.alignment", "tokenizer.ggml.eos_token_id"]
INT_TYPES = {0: (0, 2**8 - 1), 1: (-(2**7), 2**7 - 1), 2: (0, 2**16 - 1), 3: (-(2**15), 2**15 - 1),
             4: (0, 2**32 - 1), 5: (-(2**31), 2**31 - 1), 10: (0, 2**64 - 1), 11: (-(2**63), 2**63 - 1)}


@st.composite
def hostile_values(draw):
    """(GGUF type, value): any integer type at its edges or anywhere, floats including
    NaN and infinities, booleans, and text."""
    vtype = draw(st.sampled_from([*INT_TYPES, 6, 12, 7, 8]))
    if vtype in INT_TYPES:
        low, high = INT_TYPES[vtype]
        usual = [v for v in (0, 1, 2, 3, 64, 256, 512, 4096) if low <= v <= high]
        return vtype, draw(st.one_of(st.sampled_from([low, high, *usual]), st.integers(low, high)))
    if vtype in (6, 12):
        return vtype, draw(st.floats(allow_nan=True, allow_infinity=True, width=32 if vtype == 6 else 64))
    if vtype == 7:
        return vtype, draw(st.booleans())
    return vtype, draw(st.text(max_size=12))


class Original:
    """The real file's bytes, behind a short repr (hypothesis prints its arguments on failure)."""

    def __init__(self, path: Path):
        self.data = path.read_bytes()

    def __repr__(self) -> str:
        return f"<{len(self.data):,} bytes>"


@pytest.fixture(scope="module")
def real_bytes(model) -> Original:
    return Original(model)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(SHAPE_KEYS + FREE_KEYS), hostile=hostile_values())
def test_a_hostile_hyper_parameter_is_refused_or_harmless(tmp_path_factory, model, real_bytes, key, hostile):
    from assistant.fit import plan_gguf

    vtype, value = hostile
    original = parse_header(model)[0].get(key) if key != "general.alignment" else 32
    path = tmp_path_factory.mktemp("fuzzed") / "f.gguf"
    path.write_bytes(with_value(real_bytes.data, key, vtype, value))
    try:
        summary = read_gguf(path)
    except XGenError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
        return
    # Accepted: the value is a number of the right kind, and one the tensors agree with.
    assert not isinstance(value, (str, bool))
    if key in SHAPE_KEYS:
        assert value == original
    elif key == "general.alignment":  # any power of two is valid GGUF
        assert value > 0 and value & (value - 1) == 0
    else:
        assert value == value and abs(value) != float("inf") and value >= 0
    plan = plan_gguf(path, 0, None, available=2 * GiB)  # finishes, whatever the context says
    assert plan.n_ctx == summary.context_length or plan.n_ctx < summary.context_length
