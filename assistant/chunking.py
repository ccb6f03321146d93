"""Split a Document into consecutive chunks that each fit a token budget.

The chunks of ``split_document`` cover the text exactly: no gaps, no overlap, so a
map-reduce over them reads every character once. Each chunk has at most ``max_tokens``
tokens, counted on the chunk's own text (BPE counts of a concatenation differ slightly
from the sum of its parts, so every chunk is counted again before it is accepted).

Where to cut, in order of preference:

0. blank lines (paragraphs),
1. line ends,
2. sentence ends (. ! ? ... and CJK 。！？),
3. spaces (before a word, where the tokenizer would start a new token anyway),
4. anywhere, by tokens, for a run with none of the above (base64, a minified line, CJK).

A text is first cut into paragraphs; only a paragraph over budget is cut into lines, only
a line over budget into sentences, and so on. The resulting pieces are then packed
greedily: a chunk takes as many consecutive pieces as fit. When that would end a chunk
at a weaker boundary (a line inside a paragraph, say) and a stronger one exists in the
chunk's last part, the chunk ends at the stronger one instead, as long as it keeps at
least MIN_FILL of its size.

Cost: each piece is counted once and each chunk about once or twice, so splitting is
linear in the text (a 1 MB document takes a fraction of a second with tiktoken).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from assistant.documents import Document

CountTokens = Callable[[str], int]

PARAGRAPH, LINE, SENTENCE, WORD, HARD = range(5)

# A chunk may end at a stronger boundary than the greedy one if it keeps this share of its size.
MIN_FILL = 0.6

_PARAGRAPH_BREAK = re.compile(r"\n(?:[^\S\n]*\n)+")  # a newline then blank line(s); cut after
_LINE_BREAK = re.compile(r"\n+")  # cut after
_SENTENCE_END = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)"  # Western: punctuation (and closers) then space
    r"|[\u3002\uff01\uff1f\uff0e]+[\u300d\u300f\u201d\u2019\uff09)]*"  # CJK: no space follows
)
_WORD_START = re.compile(r"\s(?=\S)")  # cut before the last space before a word


@dataclass(frozen=True)
class Chunk:
    """Characters [start, end) of a document, with their token count."""

    document: Document
    start: int
    end: int
    n_tokens: int

    def __repr__(self) -> str:
        return f"Chunk({self.label!r}, chars={self.start}:{self.end}, tokens={self.n_tokens})"

    @property
    def text(self) -> str:
        return self.document.text[self.start:self.end]

    @property
    def label(self) -> str:
        """Where the chunk is, for citations: "name:12-30" or "name p.3-4"."""
        return self.document.location(self.start, self.end)

    @property
    def first_line(self) -> int:
        """Line of the chunk's first non-blank character (1-based)."""
        return self.document.span_lines(self.start, self.end)[0]

    @property
    def last_line(self) -> int:
        """Line of the chunk's last non-blank character (1-based)."""
        return self.document.span_lines(self.start, self.end)[1]

    @property
    def first_page(self) -> int:
        return self.document.span_pages(self.start, self.end)[0]

    @property
    def last_page(self) -> int:
        return self.document.span_pages(self.start, self.end)[1]


# A piece: (start, end, n_tokens, level of the boundary at its end).
_Piece = tuple[int, int, int, int]


def _boundaries(level: int, text: str, start: int, end: int) -> list[int]:
    """Cut positions of a given level strictly inside [start, end)."""
    if level == PARAGRAPH:
        cuts = [m.end() for m in _PARAGRAPH_BREAK.finditer(text, start, end)]
    elif level == LINE:
        cuts = [m.end() for m in _LINE_BREAK.finditer(text, start, end)]
    elif level == SENTENCE:
        cuts = []
        for m in _SENTENCE_END.finditer(text, start, end):
            cut = m.end()
            # keep the space that starts the next sentence with it (" Next" is one token)
            while cut + 1 < end and text[cut].isspace() and text[cut + 1].isspace():
                cut += 1
            cuts.append(cut)
    else:  # WORD
        cuts = [m.start() for m in _WORD_START.finditer(text, start, end)]
    out = []
    last = start
    for c in cuts:
        if last < c < end:
            out.append(c)
            last = c
    return out


def _split_piece(
    text: str,
    start: int,
    end: int,
    n_tokens: int,
    level: int,
    end_level: int,
    max_tokens: int,
    count: CountTokens,
    out: list[_Piece],
) -> None:
    """Cut [start, end) (n_tokens > max_tokens) at boundaries of `level` or weaker."""
    cuts: list[int] = []
    while level < HARD:
        cuts = _boundaries(level, text, start, end)
        if cuts:
            break
        level += 1
    if level == HARD:
        _hard_split(text, start, end, n_tokens, end_level, max_tokens, count, out)
        return
    edges = [start, *cuts, end]
    for a, b in zip(edges, edges[1:]):
        piece_level = level if b != end else end_level
        n = count(text[a:b])
        if n <= max_tokens:
            out.append((a, b, n, piece_level))
        else:  # recursion depth is bounded by the number of levels
            _split_piece(text, a, b, n, level + 1, piece_level, max_tokens, count, out)


def _hard_split(
    text: str,
    start: int,
    end: int,
    n_tokens: int,
    end_level: int,
    max_tokens: int,
    count: CountTokens,
    out: list[_Piece],
) -> None:
    """Cut a run with no usable boundary into the longest prefixes that fit, by search.

    Each step counts only prefixes near the expected size (from the run's own
    characters-per-token ratio), interpolating between the longest prefix known to fit
    and the shortest known not to; it stops within 1% of the budget.
    """
    slack = max_tokens // 100
    ratio = (end - start) / max(n_tokens, 1)  # characters per token
    pos = start
    while pos < end:
        remaining = end - pos
        lo, lo_n = 0, 0  # longest prefix known to fit
        hi, hi_n = 0, 0  # shortest prefix known not to fit (0: none yet)
        guess = min(remaining, max(1, int(max_tokens * ratio)))
        bisect_next = False
        while True:
            n = count(text[pos:pos + guess])
            if n <= max_tokens:
                lo, lo_n = guess, n
            else:
                hi, hi_n = guess, n
            if lo == remaining or lo_n >= max_tokens - slack or (hi and hi - lo <= 1):
                break
            if not hi:  # grow: extrapolate from the last fitting prefix, at least +1/8
                estimate = int(lo * max_tokens / max(lo_n, 1))
                guess = min(remaining, max(estimate, lo + max(1, lo // 8)))
            elif bisect_next or hi_n <= lo_n:
                guess = (lo + hi) // 2
            else:  # interpolate towards the budget, alternating with bisection
                estimate = lo + (hi - lo) * (max_tokens - lo_n) / (hi_n - lo_n)
                guess = min(hi - 1, max(lo + 1, int(estimate)))
            bisect_next = not bisect_next if hi else False
        if lo == 0:
            raise ValueError(
                f"max_tokens={max_tokens} is too small: the single character "
                f"{text[pos]!r} alone is {count(text[pos])} tokens"
            )
        cut = pos + lo
        out.append((pos, cut, lo_n, HARD if cut < end else end_level))
        ratio = lo / max(lo_n, 1)
        pos = cut


def _pieces(text: str, max_tokens: int, count: CountTokens) -> list[_Piece]:
    """The text cut into pieces of at most max_tokens each, at the strongest boundaries."""
    out: list[_Piece] = []
    edges = [0, *_boundaries(PARAGRAPH, text, 0, len(text)), len(text)]
    for a, b in zip(edges, edges[1:]):
        n = count(text[a:b])
        if n <= max_tokens:
            out.append((a, b, n, PARAGRAPH))
        else:
            _split_piece(text, a, b, n, LINE, PARAGRAPH, max_tokens, count, out)
    return out


def _greedy_end(pieces: list[_Piece], i: int, budget: int) -> tuple[int, int]:
    """End j (exclusive) of the chunk starting at piece i, and its estimated tokens.

    Takes pieces while the sum of their counts fits the budget (always at least one),
    then moves the end back to a stronger boundary when that keeps MIN_FILL of the size.
    """
    n = len(pieces)
    j, total = i, 0
    while j < n and (j == i or total + pieces[j][2] <= budget):
        total += pieces[j][2]
        j += 1
    if j == n or pieces[j - 1][3] == PARAGRAPH:
        return j, total
    best_j, best_level, best_total = j, pieces[j - 1][3], total
    prefix = total
    for k in range(j - 1, i, -1):  # candidate: end after piece k-1
        prefix -= pieces[k][2]
        if prefix < MIN_FILL * total:
            break
        level = pieces[k - 1][3]
        if level < best_level:
            best_j, best_level, best_total = k, level, prefix
            if level == PARAGRAPH:
                break
    return best_j, best_total


def _pack(text: str, pieces: list[_Piece], max_tokens: int, count: CountTokens) -> list[tuple[int, int, int]]:
    spans: list[tuple[int, int, int]] = []
    n_pieces = len(pieces)
    i = 0
    while i < n_pieces:
        budget = max_tokens
        accepted: tuple[int, int] | None = None  # (j, n_tokens)
        for _ in range(8):
            j, estimate = _greedy_end(pieces, i, budget)
            n = pieces[i][2] if j == i + 1 else count(text[pieces[i][0]:pieces[j - 1][1]])
            if n <= max_tokens:
                if accepted is None or j > accepted[0]:
                    accepted = (j, n)
                # The concatenation took fewer tokens than the pieces: try to take more.
                if j < n_pieces and n < estimate and n + pieces[j][2] <= max_tokens:
                    budget += estimate - n
                    continue
                break
            if accepted is not None:
                break  # the larger attempt failed: keep the one that fitted
            budget -= max(n - max_tokens, 1)
        if accepted is None:
            # Did not converge in 8 tries (pathological counts): shrink piece by piece.
            j = _greedy_end(pieces, i, budget)[0]
            while True:
                n = pieces[i][2] if j == i + 1 else count(text[pieces[i][0]:pieces[j - 1][1]])
                if n <= max_tokens:
                    break
                j -= 1
            accepted = (j, n)
        j, n = accepted
        spans.append((pieces[i][0], pieces[j - 1][1], n))
        i = j
    return spans


def split_document(doc: Document, max_tokens: int, count_tokens: CountTokens) -> list[Chunk]:
    """Consecutive chunks covering doc.text exactly, each of at most max_tokens tokens.

    count_tokens(text) must count like the model that will read the chunks (e.g.
    ``lambda s: len(XGenTokenizer().encode(s))``).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    text = doc.text
    if not text:
        return []
    pieces = _pieces(text, max_tokens, count_tokens)
    return [Chunk(doc, a, b, n) for a, b, n in _pack(text, pieces, max_tokens, count_tokens)]


# A lone newline between two non-space characters is a piece of its own in GPT-2's
# pre-tokenizer, so counting the text on each side of it apart gives the whole text's
# count. (A longer run of white space is not: "\n\n" before a word is cut as "\n" + "\n",
# but as one piece at the end of a slice.)
_PIECE_BOUNDARY = re.compile(r"(?<=\S)\n(?=\S)")
COUNT_SLICE = 1 << 20  # characters counted per call


def count_in_slices(encode: Callable[[str], list[int]], text: str, slice_chars: int = COUNT_SLICE) -> int:
    """len(encode(text)), counted a slice at a time at piece boundaries: the same count, but
    no single call builds a list of millions of ids while holding the GIL (a 49 MB file
    froze the app's UI thread for seconds when counted in one call)."""
    total, start = 0, 0
    while start < len(text):
        end = len(text)
        if end - start > slice_chars:
            boundary = _PIECE_BOUNDARY.search(text, start + slice_chars)
            end = boundary.end() if boundary else len(text)
        total += len(encode(text[start:end]))
        start = end
    return total


@functools.lru_cache(maxsize=1)
def xgen_token_counter() -> CountTokens:
    """count_tokens for XGen (offline: raises XGenError if the vocabulary is not cached)."""
    from models.tokenizer import XGenTokenizer

    encode = XGenTokenizer(allow_download=False).encoding.encode_ordinary
    return lambda s: count_in_slices(encode, s)

