"""The GGUF vocabulary that makes llama.cpp tokenize exactly like XGenTokenizer.

llama.cpp's "gpt2" tokenizer model is merge-driven BPE: it needs token strings in
GPT-2's byte-to-unicode spelling and an ordered merges list, while tiktoken only has
ranks. The recipe (checked in ../shared/XGEN.md, 0 mismatches over 1.43 M tokens):

* every rank, whitespace runs included, is a NORMAL token (USER_DEFINED tokens would be
  matched verbatim in raw text and break parity); specials are CONTROL; the padding
  rows up to the model's vocab_size are UNUSED with unique placeholder strings;
* the merge of a GPT-2 rank r is what BPE over its bytes, using only ranks < r, leaves
  as its two final parts;
* XGen's whitespace runs have reversed ranks (31 spaces < 30 spaces < ...), so that
  derivation finds no pair for them; a run of n gets the merge (run of n-1, one char),
  listed in the run's rank order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gguf
import tiktoken

from models.errors import XGenError
from models.tokenizer import EOT_ID, XGenTokenizer


@dataclass
class GGUFVocab:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]  # "A B" in GPT-2 unicode spelling, highest priority first


@functools.lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (as in its encoder.py)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return dict(sorted(table.items()))


def _spell(token: bytes, table: dict[int, str]) -> str:
    return "".join(table[b] for b in token)


def _bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's BPE on one token's bytes, allowed only merges into ranks < max_rank."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best_i, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            # strict "<" keeps the leftmost pair on ties, like tiktoken
            if rank is not None and rank < best_rank:
                best_i, best_rank = i, rank
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def _is_whitespace_run(token: bytes) -> bool:
    return len(token) >= 2 and token[0] in b" \t" and token == token[:1] * len(token)


@functools.lru_cache(maxsize=2)
def _derive_merges(encoding: tiktoken.Encoding) -> tuple[tuple[bytes, bytes], ...]:
    """One merge per multi-byte rank, in rank order. Cached per Encoding object."""
    ranks: dict[bytes, int] = encoding._mergeable_ranks
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue  # the 256 byte tokens are the alphabet, not merges
        parts = _bpe_parts(ranks, token, rank)
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
        elif _is_whitespace_run(token) and token[:-1] in ranks:
            merges.append((token[:-1], token[-1:]))
        else:
            raise XGenError(f"Cannot derive a BPE merge for token {rank} ({token!r})")
    return tuple(merges)


def build_gguf_vocab(tokenizer: XGenTokenizer, vocab_size: int) -> GGUFVocab:
    """Tokens, types and merges for a model with vocab_size embedding rows."""
    n_vocab = tokenizer.n_vocab
    if vocab_size < n_vocab:
        raise XGenError(
            f"The model's vocab_size {vocab_size} is smaller than "
            f"the XGen tokenizer's {n_vocab} tokens"
        )
    table = byte_to_unicode()

    tokens: list[str | None] = [None] * vocab_size
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    for token, rank in tokenizer.mergeable_ranks.items():
        tokens[rank] = _spell(token, table)
        types[rank] = int(gguf.TokenType.NORMAL)
    for text, i in tokenizer.special_tokens.items():
        # llama.cpp matches CONTROL tokens by their raw text (all ASCII here, which GPT-2's
        # table spells unchanged anyway).
        tokens[i] = text
        types[i] = int(gguf.TokenType.CONTROL)
    holes = [i for i in range(n_vocab) if tokens[i] is None]
    if holes:
        raise XGenError(f"The tokenizer has no token for ids {holes[:5]}")
    for i in range(n_vocab, vocab_size):
        tokens[i] = f"[PAD{i}]"
    if len(set(tokens)) != vocab_size:
        raise XGenError("The GGUF token list would hold duplicate strings")

    merges = [
        f"{_spell(a, table)} {_spell(b, table)}" for a, b in _derive_merges(tokenizer.encoding)
    ]
    return GGUFVocab(tokens=tokens, token_types=types, merges=merges)


def write_vocab(writer: gguf.GGUFWriter, vocab: GGUFVocab) -> None:
    """Add the tokenizer metadata llama.cpp needs to tokenize like XGen."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # GPT-2's pre-tokenizer regex, same as r50k_base
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    # Explicit, because llama.cpp's BPE defaults differ (it would prepend a BOS).
    writer.add_bos_token_id(EOT_ID)
    writer.add_eos_token_id(EOT_ID)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
