"""The XGen tokenizer (models/tokenizer.py) and its GGUF vocabulary (converter/vocab.py).

Expected ids come from ../shared/XGEN.md, written out here independently of the code.
References: tiktoken's own r50k_base, and small BPE implementations written in this file.
"""

from __future__ import annotations

import email
import json
import os
from pathlib import Path

import gguf
import pytest
import regex
import tiktoken

import models.tokenizer as tokmod
from tests.corpus import real_text_corpus, real_text_sources
from converter.vocab import GGUFVocab, build_gguf_vocab, byte_to_unicode, write_vocab
from models.errors import XGenError
from models.tokenizer import EOT_ID, N_VOCAB, SPECIAL_TOKENS, XGenTokenizer

ADDED_SPECIALS = (
    "<fim_prefix> <fim_middle> <fim_suffix> <fim_pad> <filename> <gh_stars> <issue_start> "
    "<issue_comment> <issue_closed> <jupyter_start> <jupyter_text> <jupyter_code> "
    "<jupyter_output> <empty_output> <commit_before> <commit_msg> <commit_after> <reponame>"
).split()
EXPECTED_SPECIALS = {"<|endoftext|>": 50256, **{t: 50295 + i for i, t in enumerate(ADDED_SPECIALS)}}


def space_run_id(n: int) -> int:
    return 50257 + (31 - n)  # 31 spaces = 50257 ... 2 spaces = 50286


def tab_run_id(n: int) -> int:
    return 50287 + (9 - n)  # 9 tabs = 50287 ... 2 tabs = 50294


@pytest.fixture(scope="module")
def tok() -> XGenTokenizer:
    return XGenTokenizer(allow_download=False)


@pytest.fixture(scope="module")
def r50k() -> tiktoken.Encoding:
    return tiktoken.get_encoding("r50k_base")


@pytest.fixture(scope="module")
def vocab(tok) -> GGUFVocab:
    return build_gguf_vocab(tok, 51200)


def stdlib_text() -> str:
    """A few thousand lines of real text: the json and email packages' sources and docs."""
    parts = []
    for pkg in (json, email):
        root = Path(pkg.__file__).parent
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".rst") and "__pycache__" not in path.parts:
                parts.append(path.read_text(encoding="utf-8"))
    text = "\n".join(parts)
    assert len(text) > 300_000
    return text


def whitespace_cases() -> list[str]:
    cases = []
    for n in range(1, 41):
        for ws in (" " * n, "\t" * n, " \t" * (n // 2 + 1), "\t " * n, "\t" * n + " " * n):
            cases += [ws, f"x{ws}y", f"{ws}\n", f"\n{ws}def f():", f"a{ws}", f"{ws}a", f"é{ws}中"]
            cases.append(f"if x:\n{ws}return {ws}1\n\n{ws}\n")
    return cases


# --- ids and numbering ------------------------------------------------------------------


def test_special_token_ids(tok):
    assert SPECIAL_TOKENS == EXPECTED_SPECIALS
    assert tok.special_tokens == EXPECTED_SPECIALS
    assert EOT_ID == tok.eot_id == 50256
    for text, i in EXPECTED_SPECIALS.items():
        assert tok.encode(text, allow_special=True) == [i]
        assert tok.token_bytes(i) == text.encode()
        assert tok.decode([i]) == text


def test_whitespace_run_ids(tok):
    ranks = tok.mergeable_ranks
    for n in range(2, 32):
        assert ranks[b" " * n] == space_run_id(n)
        assert tok.encode(" " * n) == [space_run_id(n)]
    for n in range(2, 10):
        assert ranks[b"\t" * n] == tab_run_id(n)
        assert tok.encode("\t" * n) == [tab_run_id(n)]
    # longer runs are split, longest run first (BPE grows the leftmost piece)
    assert tok.encode(" " * 40) == [space_run_id(31), space_run_id(9)]
    assert tok.encode("\t" * 12) == [tab_run_id(9), tab_run_id(3)]
    # the pre-tokenizer leaves one space to the word: "\n" + 7 spaces, then " return"
    assert tok.encode("\n        return") == [198, space_run_id(7), 1441]


def test_n_vocab_has_no_holes(tok):
    assert tok.n_vocab == N_VOCAB == 50313
    ranks = tok.mergeable_ranks
    assert len(ranks) == 50256 + 30 + 8
    ids = sorted([*ranks.values(), *tok.special_tokens.values()])
    assert ids == list(range(50313))
    for i in range(50313):
        assert tok.token_bytes(i)
    # the model's padding rows have no text
    assert tok.token_bytes(50313) == b"" and tok.token_bytes(51199) == b""
    assert tok.decode([72, 50313, 51199, 72]) == "ii"


def test_no_whitespace_run_exists_in_gpt2(r50k):
    # the runs are new tokens: GPT-2 encodes them as single spaces/tabs
    assert r50k.encode_ordinary(" " * 5) == [220] * 5
    assert r50k.encode_ordinary("\t\t") == [197, 197]


# --- encoding -----------------------------------------------------------------------------


def test_ordinary_text_matches_gpt2(tok, r50k):
    # Without runs of 2+ spaces/tabs XGen's extra ranks never apply: it must be GPT-2.
    text = regex.sub(r"[ \t]{2,}", " ", stdlib_text())
    text += "\nnaïve café Straße 東京 👍🏽 <|endoftext|> <fim_prefix> ½ ‰ \u200b\r\n"
    assert tok.encode(text) == r50k.encode_ordinary(text)


def test_whitespace_runs_match_reference_bpe(tok, r50k):
    """A pure-Python tiktoken-style encoder with the ranks XGEN.md lists."""
    ranks = dict(r50k._mergeable_ranks)
    for n in range(2, 32):
        ranks[b" " * n] = space_run_id(n)
    for n in range(2, 10):
        ranks[b"\t" * n] = tab_run_id(n)
    pattern = regex.compile(r50k._pat_str)

    def rank_bpe(piece: bytes) -> list[int]:
        parts = [piece[i : i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            pairs = (ranks.get(parts[i] + parts[i + 1], 1 << 30) for i in range(len(parts) - 1))
            r, i = min((r, i) for i, r in enumerate(pairs))
            if r == 1 << 30:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [ranks[p] for p in parts]

    for text in whitespace_cases():
        expected = [t for piece in pattern.findall(text) for t in rank_bpe(piece.encode())]
        assert tok.encode(text) == expected, repr(text)


def test_special_text_is_plain_unless_allowed(tok, r50k):
    plain = tok.encode("<|endoftext|>")
    assert len(plain) > 1 and max(plain) < 50256
    assert plain == r50k.encode_ordinary("<|endoftext|>")
    assert tok.encode("<|endoftext|>", allow_special=True) == [50256]

    fim = tok.encode("<fim_prefix>")
    assert len(fim) > 1 and max(fim) < 50256
    doc = "x = 1<|endoftext|><reponame>y"
    assert EOT_ID not in tok.encode(doc) and 50312 not in tok.encode(doc)
    with_specials = tok.encode(doc, allow_special=True)
    assert with_specials[-3:-1] == [50256, 50312]
    assert tok.decode(tok.encode(doc)) == doc == tok.decode(with_specials)


@pytest.mark.parametrize(
    "text",
    [
        "Grüße aus Köln — ça va? Ñandú, Ærø, Œuvre",
        "東京都の天気は晴れです。北京欢迎你！서울 특별시",
        "Привет, мир! Γειά σου Κόσμε! שלום עולם مرحبا بالعالم",
        "emoji: 👩‍👩‍👧‍👦 🇫🇷 👍🏽 and combining: e\u0301 a\u0308 \ufeffBOM",
        "\x00\x01 control \x7f and \U0010ffff and \r\n\r\n line ends\t\t tabs   spaces",
    ],
)
def test_round_trip_non_ascii(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode()
    assert tok.decode_bytes(ids) == text.encode()


def test_round_trip_cjk_corpus(tok):
    cjk = Path(json.__file__).parents[1] / "test" / "cjkencodings"
    files = sorted(cjk.glob("*-utf8.txt"))
    if not files:
        pytest.skip("this Python has no Lib/test/cjkencodings")
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert tok.decode(tok.encode(text)) == text


def test_decode_replaces_split_characters(tok):
    ids = tok.encode("𝔘")
    assert len(ids) == 3  # this 4-byte character spans three byte-level tokens
    assert tok.decode(ids[:1]) == "\ufffd"  # an incomplete character, replaced
    assert tok.decode(ids[1:]) == "\ufffd\ufffd"  # two stray continuation bytes
    assert tok.decode(ids) == "𝔘"
    with pytest.raises(ValueError):
        tok.decode([-1])


# --- offline behaviour ----------------------------------------------------------------------


def test_gpt2_ranks_cached_follows_tiktoken_lookup(tmp_path, monkeypatch):
    assert tokmod.gpt2_ranks_cached()  # conftest seeded TIKTOKEN_CACHE_DIR
    seeded = Path(os.environ["TIKTOKEN_CACHE_DIR"]) / "0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4"

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert not tokmod.gpt2_ranks_cached()
    (tmp_path / seeded.name).write_bytes(b"corrupt")
    assert not tokmod.gpt2_ranks_cached()  # tiktoken would re-download it
    (tmp_path / seeded.name).write_bytes(seeded.read_bytes())
    assert tokmod.gpt2_ranks_cached()

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken: caching disabled
    assert not tokmod.gpt2_ranks_cached()

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))
    assert tokmod.gpt2_ranks_cached()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """No cached ranks and no built Encoding; the real one is rebuilt afterwards."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(blobpath):
        raise ConnectionError(f"Failed to resolve host\nfor {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    tokmod._build_encoding.cache_clear()
    yield tmp_path
    tokmod._build_encoding.cache_clear()


def test_offline_without_ranks_is_a_user_error(empty_cache):
    with pytest.raises(XGenError) as err:
        tokmod.load_xgen_encoding(allow_download=False)
    message = str(err.value)
    assert "\n" not in message
    assert "offline" in message and "TIKTOKEN_CACHE_DIR" in message and "tiktoken.get_encoding('r50k_base')" in message
    with pytest.raises(XGenError):
        XGenTokenizer(allow_download=False)


def test_download_failure_is_a_user_error(empty_cache):
    with pytest.raises(XGenError) as err:
        tokmod.load_xgen_encoding(allow_download=True)
    message = str(err.value)
    assert "\n" not in message
    assert "Failed to resolve host" in message and "TIKTOKEN_CACHE_DIR" in message


def test_encoding_is_built_once():
    assert tokmod.load_xgen_encoding() is tokmod.load_xgen_encoding(allow_download=False)
    assert tokmod.load_xgen_encoding().name == "xgen"


# --- GGUF vocabulary ------------------------------------------------------------------------


def test_byte_to_unicode_table():
    table = byte_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert table[ord("!")] == "!" and table[ord("~")] == "~" and table[0xFF] == "ÿ"
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("\t")] == "ĉ"
    assert table[0] == "Ā" and table[0xAD] == "Ń"


def test_gguf_tokens_and_types(vocab):
    NORMAL, CONTROL, UNUSED = gguf.TokenType.NORMAL, gguf.TokenType.CONTROL, gguf.TokenType.UNUSED
    assert len(vocab.tokens) == len(vocab.token_types) == 51200
    assert len(set(vocab.tokens)) == 51200
    assert vocab.tokens[0] == "!" and vocab.tokens[220] == "Ġ" and vocab.tokens[198] == "Ċ"
    assert vocab.tokens[1169] == "the" and vocab.tokens[262] == "Ġthe"
    assert vocab.tokens[50256] == "<|endoftext|>"
    assert vocab.tokens[space_run_id(31)] == "Ġ" * 31 and vocab.tokens[space_run_id(2)] == "ĠĠ"
    assert vocab.tokens[tab_run_id(9)] == "ĉ" * 9 and vocab.tokens[tab_run_id(2)] == "ĉĉ"
    assert vocab.tokens[50295] == "<fim_prefix>" and vocab.tokens[50312] == "<reponame>"

    types = vocab.token_types
    assert types[0] == types[50255] == types[50257] == types[50294] == NORMAL
    assert types[50256] == types[50295] == types[50312] == CONTROL
    assert types[50313] == types[51199] == UNUSED
    assert (types.count(NORMAL), types.count(CONTROL), types.count(UNUSED)) == (50294, 19, 887)


def test_gguf_vocab_too_small_is_an_error(tok):
    with pytest.raises(XGenError):
        build_gguf_vocab(tok, 50000)
    assert len(build_gguf_vocab(tok, N_VOCAB).tokens) == N_VOCAB


def test_merges_are_well_formed(vocab):
    index = {t: i for i, t in enumerate(vocab.tokens)}
    assert len(vocab.merges) == 50294 - 256  # one per multi-byte rank
    results = []
    for merge in vocab.merges:
        a, b = merge.split(" ")
        assert a in index and b in index
        results.append(index[a + b])
    assert results == sorted(results)  # merge priority follows rank
    # the whitespace runs close the list: (n-1, 1) in rank order, 2 spaces from plain BPE
    assert vocab.merges[-38] == "Ġ" * 30 + " Ġ"
    assert vocab.merges[-9] == "Ġ Ġ"
    assert vocab.merges[-8] == "ĉ" * 8 + " ĉ"
    assert vocab.merges[-1] == "ĉ ĉ"


@pytest.fixture(scope="module")
def merge_encode(tok, vocab):
    """Merge-driven BPE, the way llama.cpp's gpt2 model works: of the adjacent symbol
    pairs that are in the merges list, merge the one listed first (leftmost on ties)."""
    merge_rank = {tuple(m.split(" ")): i for i, m in enumerate(vocab.merges)}
    token_id = {t: i for i, t in enumerate(vocab.tokens[: tok.n_vocab])}
    table = byte_to_unicode()
    pattern = regex.compile(tok.encoding._pat_str)
    memo: dict[str, list[int]] = {}

    def merge_bpe(piece: str) -> list[int]:
        if piece not in memo:
            symbols = [table[b] for b in piece.encode()]
            while len(symbols) > 1:
                best = min(
                    (merge_rank.get((symbols[i], symbols[i + 1]), 1 << 30), i)
                    for i in range(len(symbols) - 1)
                )
                if best[0] == 1 << 30:
                    break
                i = best[1]
                symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
            memo[piece] = [token_id[s] for s in symbols]
        return memo[piece]

    return lambda text: [t for piece in pattern.findall(text) for t in merge_bpe(piece)]


def test_merges_reproduce_tiktoken(tok, merge_encode):
    n_tokens = 0
    for text in [stdlib_text(), *whitespace_cases()]:
        expected = tok.encode(text)
        assert merge_encode(text) == expected, repr(text[:200])
        n_tokens += len(expected)
    assert n_tokens > 50_000


def test_merges_reproduce_tiktoken_on_real_corpus(tok, merge_encode):
    """The same over 500k tokens of mixed real text (code, prose, HTML, CJK, Makefiles)."""
    docs = real_text_sources(500_000)
    kinds = {kind for kind, _, _, _ in docs}
    assert kinds == {"python", "docs", "html", "non_ascii", "whitespace"}
    assert sum(n for *_, n in docs) >= 500_000
    assert real_text_corpus(500_000) == [text for _, _, text, _ in docs]
    joined = "".join(text for _, _, text, _ in docs)
    assert "\t\t\t" in joined and " " * 12 in joined and regex.search(r"\p{Han}", joined)
    for _, path, text, n in docs:
        expected = tok.encode(text)
        assert len(expected) == n
        assert merge_encode(text) == expected, path


def test_write_vocab_round_trips_through_gguf(tmp_path, vocab):
    # A slice of the real vocabulary (ordinary, runs, specials, padding): GGUFReader takes
    # seconds to parse 51200 strings, and write_vocab does not care about the length.
    keep = [*range(300), *range(50250, 50320), *range(51190, 51200)]
    vocab = GGUFVocab(
        tokens=[vocab.tokens[i] for i in keep],
        token_types=[vocab.token_types[i] for i in keep],
        merges=vocab.merges[:200] + vocab.merges[-40:],
    )
    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    write_vocab(writer, vocab)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    fields = gguf.GGUFReader(str(path)).fields

    def value(key):
        return fields[key].contents()

    assert value("tokenizer.ggml.model") == "gpt2"
    assert value("tokenizer.ggml.pre") == "gpt-2"
    assert value("tokenizer.ggml.tokens") == vocab.tokens
    assert value("tokenizer.ggml.token_type") == vocab.token_types
    assert value("tokenizer.ggml.merges") == vocab.merges
    assert value("tokenizer.ggml.bos_token_id") == value("tokenizer.ggml.eos_token_id") == 50256
    assert value("tokenizer.ggml.add_bos_token") is False
    assert value("tokenizer.ggml.add_eos_token") is False
