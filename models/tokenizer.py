"""The XGen-7B tokenizer, rebuilt on tiktoken.

XGen ships its tokenizer only as Hugging Face remote code. It is GPT-2's byte-level BPE
(tiktoken ``r50k_base``) extended, in this order, with:

* runs of 31..2 spaces as ordinary mergeable ranks 50257..50286 (longest first),
* runs of 9..2 tabs as ranks 50287..50294 (longest first),
* 18 special tokens 50295..50312, plus GPT-2's ``<|endoftext|>`` = 50256.

That gives 50313 ids with no holes. The model's embedding has 51200 rows; rows
50313..51199 are padding with no text. See ../shared/XGEN.md.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Iterable

import tiktoken
import tiktoken.load

from models.errors import XGenError

EOT_ID = 50256
N_VOCAB = 50313

# Longest run first: the reference tokenizer adds them with reversed(range(...)).
SPACE_RUNS = [" " * n for n in range(31, 1, -1)]
TAB_RUNS = ["\t" * n for n in range(9, 1, -1)]

_ADDED_SPECIALS = [
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<empty_output>",
    "<commit_before>",
    "<commit_msg>",
    "<commit_after>",
    "<reponame>",
]
_FIRST_SPECIAL = EOT_ID + 1 + len(SPACE_RUNS) + len(TAB_RUNS)  # 50295

SPECIAL_TOKENS: dict[str, int] = {"<|endoftext|>": EOT_ID}
SPECIAL_TOKENS.update({tok: _FIRST_SPECIAL + i for i, tok in enumerate(_ADDED_SPECIALS)})
assert max(SPECIAL_TOKENS.values()) == N_VOCAB - 1

# Where tiktoken fetches r50k_base from; its cache file is named by the sha1 of this
# address, and tiktoken rejects (and re-downloads) a cached file with another sha256.
_R50K_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
R50K_CACHE_NAME = hashlib.sha1(_R50K_URL.encode()).hexdigest()  # 0ea1e91b...
_R50K_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"

_HOW_TO_GET = (
    "fetch them once, with a network connection: python -c \"import tiktoken; tiktoken.get_encoding('r50k_base')\" "
    f"(or set TIKTOKEN_CACHE_DIR to a folder holding them as a file named {R50K_CACHE_NAME})"
)


def _tiktoken_cache_dir() -> str | None:
    """The folder tiktoken reads cached files from, or None if caching is disabled.

    Mirrors tiktoken.load.read_file_cached: TIKTOKEN_CACHE_DIR, then DATA_GYM_CACHE_DIR,
    then the default (which moved from <tmp>/data-gym-cache to ~/.cache/tiktoken in
    newer tiktoken releases, so ask the installed version when it can tell us).
    """
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        default = getattr(tiktoken.load, "_default_cache_dir", None)
        cache_dir = default() if default else os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return cache_dir or None  # "" disables tiktoken's cache


def gpt2_ranks_cached() -> bool:
    """Whether tiktoken can load r50k_base without touching the network."""
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        return False
    try:
        with open(os.path.join(cache_dir, R50K_CACHE_NAME), "rb") as f:
            data = f.read()
    except OSError:
        return False
    # A corrupt cached file makes tiktoken download again, so it does not count.
    return hashlib.sha256(data).hexdigest() == _R50K_SHA256


@functools.lru_cache(maxsize=1)
def _build_encoding() -> tiktoken.Encoding:
    from tiktoken_ext import openai_public

    try:
        # The constructor returns fresh arguments: extending its ranks dict cannot
        # corrupt tiktoken's own cached r50k_base (the upstream remote code does that).
        base = openai_public.r50k_base()
    except Exception as exc:  # requests errors, hash mismatch, unwritable cache...
        reason = " ".join(str(exc).split()) or type(exc).__name__  # keep it on one line
        raise XGenError(
            "Could not load the GPT-2 vocabulary (tiktoken r50k_base): "
            f"{reason}. To fix: {_HOW_TO_GET}"
        ) from exc

    ranks: dict[bytes, int] = dict(base["mergeable_ranks"])
    if len(ranks) != EOT_ID or max(ranks.values()) != EOT_ID - 1:
        raise XGenError(f"Unexpected GPT-2 vocabulary: {len(ranks)} ranks instead of {EOT_ID}")
    next_rank = EOT_ID + 1
    for run in SPACE_RUNS + TAB_RUNS:
        token = run.encode("ascii")
        # GPT-2 has no multi-space/tab tokens; an overlap would silently leave a hole.
        if token in ranks:
            raise XGenError(f"Unexpected GPT-2 vocabulary: {run!r} already has a rank")
        ranks[token] = next_rank
        next_rank += 1

    return tiktoken.Encoding(
        name="xgen",
        pat_str=base["pat_str"],
        mergeable_ranks=ranks,
        special_tokens=dict(SPECIAL_TOKENS),
        explicit_n_vocab=N_VOCAB,  # tiktoken checks there are no holes
    )


def load_xgen_encoding(allow_download: bool = True) -> tiktoken.Encoding:
    """The XGen tiktoken Encoding, built once per process.

    With allow_download=False it never reaches the network: it raises XGenError when
    the GPT-2 ranks are not already in tiktoken's cache.
    """
    already_built = _build_encoding.cache_info().currsize > 0
    if not allow_download and not already_built and not gpt2_ranks_cached():
        raise XGenError(
            f"The GPT-2 vocabulary (tiktoken r50k_base) is not available offline: {_HOW_TO_GET}"
        )
    return _build_encoding()


class XGenTokenizer:
    """Encode/decode text exactly like XGen's reference tokenizer."""

    eot_id = EOT_ID

    def __init__(self, encoding: tiktoken.Encoding | None = None, allow_download: bool = True):
        self._enc = encoding if encoding is not None else load_xgen_encoding(allow_download)

    @property
    def encoding(self) -> tiktoken.Encoding:
        return self._enc

    @property
    def n_vocab(self) -> int:
        return self._enc.n_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._enc._special_tokens)

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """Ordinary ranks (GPT-2's plus the whitespace runs); a copy, safe to modify."""
        return dict(self._enc._mergeable_ranks)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of text. No BOS is prepended (XGen has none).

        allow_special=False (the default, right for any document or user text) reads
        special-token spellings such as "<|endoftext|>" as plain text. allow_special=True
        turns them into their control ids, as the reference tokenizer does.
        """
        if allow_special:
            return self._enc.encode(text, allowed_special="all")
        return self._enc.encode_ordinary(text)

    def _known_ids(self, ids: Iterable[int]) -> list[int]:
        # Padding rows (ids >= n_vocab) exist in the model but have no text: drop them
        # rather than fail halfway through a generated reply.
        out = []
        for i in ids:
            i = int(i)
            if i < 0:
                raise ValueError(f"negative token id {i}")
            if i < self.n_vocab:
                out.append(i)
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self._enc.decode_bytes(self._known_ids(ids))

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        """The bytes of one token; a special token gives its UTF-8 text, padding b""."""
        known = self._known_ids([i])
        return self._enc.decode_single_token_bytes(known[0]) if known else b""
