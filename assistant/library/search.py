"""Search the library: the user's words to an FTS5 query that never scans the whole index.

- The user's text is never FTS5 syntax. It is split into words the way the index's
  tokenizer splits them (letters and digits), and every word is double-quoted, so quotes,
  `*`, `-`, `:`, brackets, NEAR, AND/OR/NOT are searched as the words they are.
- Ranking costs about 3 µs per matching passage (../shared/SEARCH.md), so a query must
  not match much of a large library. Stopwords are dropped. Then each remaining word's
  passage count is measured by FTS5 itself, capped (an unranked `LIMIT`, which stops
  early, and sees the stemmed form the index holds): the rarest words are ORed while
  their passages add up to at most RANK_BUDGET; words more common than that are dropped.
  If every word is that common, the query is their AND (all of them in one passage).
- The FTS query runs in its own subquery with its own LIMIT, before any join; the window
  grows when a path filter leaves too few hits. A time limit (a progress handler) ends a
  ranking that still runs long; the hits then come unranked, in index order.
"""

from __future__ import annotations

import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from assistant.library import names
from assistant.library.schema import IndexDatabase
from models.errors import XGenError

RANK_BUDGET = 20_000  # passages ranked at most per query (~60 ms here)
MAX_TERMS = 12
TIME_LIMIT = 0.25  # seconds a ranked query may take before it is given up for an unranked one
CHECK_EVERY = 20_000  # SQLite virtual machine steps between two looks at the clock

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves s t d ll m re ve
""".split())

_WORD = re.compile(r"[^\W_]+")  # letters and digits: unicode61's token characters, near enough


@dataclass(frozen=True)
class Hit:
    """One passage found. Lines for text files, pages for PDFs (the other pair is None).
    `n_tokens`: its XGen token count, made by `retrieve` (None from `search`: the index
    does not store counts, see extract.py)."""

    path: bytes
    start_line: int | None
    end_line: int | None
    start_page: int | None
    end_page: int | None
    score: float
    text: str
    n_tokens: int | None = None

    def location(self) -> str:
        """Where it is, for a citation: "path:12-30", "path p.3" or "path p.3-4"."""
        where = names.shown(self.path)
        if self.start_page is not None:
            pages = f"{self.start_page}" if self.start_page == self.end_page else f"{self.start_page}-{self.end_page}"
            return f"{where} p.{pages}"
        if self.start_line is not None:
            return f"{where}:{self.start_line}-{self.end_line}"
        return where

    def as_json(self) -> dict:
        return {"path": names.as_str(self.path), "start_line": self.start_line, "end_line": self.end_line,
                "page": self.start_page, "score": round(self.score, 4), "text": self.text}


def fold(word: str) -> str:
    """Lower case without diacritics, as `unicode61 remove_diacritics 2` compares words."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def query_words(text: str) -> list[str]:
    """The searchable words of `text`: folded, no stopwords, each once, in order."""
    words = [fold(w) for w in _WORD.findall(text)]
    return list(dict.fromkeys(w for w in words if w and w not in STOPWORDS))[:MAX_TERMS * 4]


def quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _count(c: sqlite3.Connection, match: str, cap: int) -> int:
    """How many passages match, counting no further than cap + 1 (no ranking: stops early)."""
    return c.execute("SELECT count(*) FROM (SELECT rowid FROM passages_fts WHERE passages_fts MATCH ? LIMIT ?)",
                     (match, cap + 1)).fetchone()[0]


def plan(c: sqlite3.Connection, words: list[str], budget: int = RANK_BUDGET) -> str | None:
    """The FTS5 query for `words` (see the module docstring), or None if nothing matches."""
    counts = [(n, w) for w in words if (n := _count(c, quoted(w), budget))]
    if not counts:
        return None
    counts.sort()
    chosen, total = [], 0
    for n, w in counts[:MAX_TERMS]:
        if total + n > budget:
            break
        chosen.append(w)
        total += n
    if chosen:
        return " OR ".join(quoted(w) for w in chosen)
    return " ".join(quoted(w) for _, w in counts[:MAX_TERMS])  # all common: their AND


def search(db: IndexDatabase, text: str, *, limit: int = 10,
           within: Iterable[bytes] | None = None) -> list[Hit]:
    """The best `limit` passages for `text`, best first, from files under `within` (roots
    or files; None: the whole index). XGenError when the text has no word to search for."""
    words = query_words(text)
    if not words:
        raise XGenError("the question has no words to search for (only punctuation, or only very common words "
                        "such as 'the')")
    scope = list(within) if within is not None else None
    with db.lock:
        try:
            return _search(db.connection, words, limit, scope)
        except sqlite3.OperationalError as exc:
            raise XGenError(f"cannot search the library index: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise db.damaged(str(exc)) from None


def _search(c: sqlite3.Connection, words: list[str], limit: int, scope: list[bytes] | None) -> list[Hit]:
    match = plan(c, words)
    if match is None:
        return []
    ranges = _file_ranges(c, scope) if scope else None
    if ranges is not None:  # files only: rank within them, not across the whole library
        hits = [h for lo, hi in ranges for h in _ranked(c, match, limit, (lo, hi))]
        return sorted(hits, key=lambda h: -h.score)[:limit]
    window = max(limit * 4, 40)
    while True:
        rows = _ranked(c, match, window)
        hits = [h for h in rows if scope is None or any(names.is_within(h.path, s) for s in scope)]
        if len(hits) >= limit or len(rows) < window or window >= RANK_BUDGET:
            return hits[:limit]
        window *= 8


_JOIN = """
SELECT f.path, p.start_line, p.end_line, p.start_page, p.end_page, -h.score, p.text
FROM ({inner}) AS h JOIN passages AS p ON p.id = h.rowid JOIN files AS f ON f.id = p.file_id
ORDER BY h.score, p.id
"""
_RANKED = "SELECT rowid, rank AS score FROM passages_fts WHERE passages_fts MATCH ?{within} ORDER BY rank LIMIT ?"
_UNRANKED = "SELECT rowid, 0.0 AS score FROM passages_fts WHERE passages_fts MATCH ?{within} LIMIT ?"
_WITHIN = " AND rowid BETWEEN ? AND ?"
MAX_FILE_RANGES = 16  # a scope of at most this many files is searched file by file


def _file_ranges(c: sqlite3.Connection, scope: list[bytes]) -> list[tuple[int, int]] | None:
    """The passage id range of each file in `scope` (a file's passages are numbered
    consecutively: schema.add_passages), or None when the scope holds a folder or many
    files. A question about one 18 MB file in a library of 1.5 million passages ranked
    the whole library's matches first (0.6 s); within the file's range it is a few ms."""
    if len(scope) > MAX_FILE_RANGES:
        return None
    ranges = []
    for path in scope:
        row = c.execute("SELECT f.status, min(p.id), max(p.id) FROM files AS f LEFT JOIN passages AS p "
                        "ON p.file_id = f.id WHERE f.path = ?", (path,)).fetchone()
        if row is None or row[0] is None:
            return None  # not a file the index holds: a folder (or unknown)
        if row[1] is not None:
            ranges.append((row[1], row[2]))
    return ranges


def _ranked(c: sqlite3.Connection, match: str, window: int, rowids: tuple[int, int] | None = None) -> list[Hit]:
    within, params = (_WITHIN, (match, *rowids, window)) if rowids else ("", (match, window))
    deadline = time.monotonic() + TIME_LIMIT
    c.set_progress_handler(lambda: time.monotonic() > deadline, CHECK_EVERY)
    try:
        rows = c.execute(_JOIN.format(inner=_RANKED.format(within=within)), params).fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        c.set_progress_handler(None, 0)  # the unranked query stops early by itself
        rows = c.execute(_JOIN.format(inner=_UNRANKED.format(within=within)), params).fetchall()
    finally:
        c.set_progress_handler(None, 0)
    return [Hit(bytes(r[0]), *r[1:]) for r in rows]


def snippet(text: str, words: list[str], width: int = 30) -> str:
    """About `width` words of `text` around its first match, matched words in **bold**;
    a word matches a query word with the same start (the index stems: index, indexing)."""
    stems = [w if len(w) <= 4 else w[:max(4, len(w) - 3)] for w in words]
    tokens = re.findall(r"\S+", text)

    def hit(token: str) -> bool:
        return any(fold(part).startswith(s) for part in _WORD.findall(token) for s in stems)

    marks = [hit(t) for t in tokens]
    first = marks.index(True) if True in marks else 0
    start = max(0, first - width // 3)
    shown = [f"**{t}**" if m else t for t, m in zip(tokens[start:start + width], marks[start:start + width])]
    return ("… " if start else "") + " ".join(shown) + (" …" if start + width < len(tokens) else "")
