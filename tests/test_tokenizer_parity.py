"""llama.cpp with the converted vocabulary tokenizes exactly like XGen's tiktoken tokenizer."""

from __future__ import annotations

import pytest

from models.llama_cpp_utils import detokenize, load_llama
from models.tokenizer import SPECIAL_TOKENS, XGenTokenizer
from tests.corpus import real_text_corpus

MIN_TOKENS = 500_000


@pytest.fixture(scope="module")
def llm(converted):
    return load_llama(converted("q8_0"), n_ctx=64)


@pytest.fixture(scope="module")
def tokenizer():
    return XGenTokenizer()


def whitespace_torture() -> list[str]:
    docs = []
    for n in range(1, 70):
        docs.append("x" + " " * n + "y" + "\t" * (n % 12) + "z\n" + " " * n + "\n")
        docs.append(("\t" * (n % 11)) + " " * (n % 33) + "if (a) {\n" + "\t" * n + "}\n\n\n")
    docs.append("".join(" " * n + "\t" * (n % 5) + "\n" * (n % 3) for n in range(120)))
    docs.append("\u00a0\u2003 nbsp and em spaces \u3000 ideographic\r\n\r\n\x0b\x0c")
    return docs


def test_parity_over_real_text(llm, tokenizer):
    docs = real_text_corpus(MIN_TOKENS) + whitespace_torture()
    total, mismatched = 0, []
    for doc in docs:
        ours = tokenizer.encode(doc)
        theirs = llm.tokenize(doc.encode("utf-8"), add_bos=False, special=False)
        total += len(ours)
        if ours != theirs:
            mismatched.append(doc[:80])
    print(f"tokenizer parity: {total} tokens in {len(docs)} documents, {len(mismatched)} mismatched")
    assert total >= MIN_TOKENS
    assert mismatched == []


def test_detokenize_round_trips(llm):
    for doc in real_text_corpus(50_000) + whitespace_torture():
        ids = llm.tokenize(doc.encode("utf-8"), add_bos=False, special=False)
        assert detokenize(llm, ids).decode("utf-8") == doc


def test_special_tokens(llm, tokenizer):
    for text, token_id in SPECIAL_TOKENS.items():
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == [token_id]
        # As document text they stay plain text, in both tokenizers.
        plain = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert plain == tokenizer.encode(text, allow_special=False)
        assert all(i < 50256 for i in plain)
    mixed = "before<|endoftext|>after<fim_prefix>def f():<fim_suffix>\n<fim_middle>"
    assert llm.tokenize(mixed.encode(), add_bos=False, special=True) == tokenizer.encode(mixed, allow_special=True)


def test_padding_rows_are_never_produced(llm):
    ids = llm.tokenize("[PAD50313] <|pad|> unused rows".encode(), add_bos=False, special=True)
    assert max(ids) < 50313
