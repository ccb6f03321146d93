"""One file to passages: read it, fingerprint it, extract its text, cut it, count tokens.

This runs in worker processes (`extract` takes and returns plain picklable values) and
never touches the index: the parent writes what it returns.

- The file is opened without blocking (a FIFO that took its place is refused) and read
  whole, up to the loaders' size limit. Its stat after the read must equal the stat
  before: a file that changed while it was read is reported as such and read again on
  the next run, never indexed half-old, half-new.
- A file whose content hash equals the one indexed (touched, copied back, synced) is not
  extracted nor cut again: only its new stat is recorded.
- Text comes from the same readers as `ask` (assistant.documents), so every kind `ask`
  reads is indexed, with the same messages for what cannot be.
- Passages are cut with assistant.chunking at the strongest boundary (paragraph, line,
  sentence, word) under PASSAGE_CHARS characters. They are not counted in XGen tokens
  here: counting every passage made tiktoken ~85% of the indexing time (bench/RESULTS.md),
  while a prompt packs a few dozen of them; `retrieve` counts exactly those it returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from assistant.chunking import split_document
from assistant.documents import DEFAULT_MAX_BYTES, document_from_bytes
from assistant.documents.errors import format_size, one_line
from assistant.documents.load import open_regular
from assistant.library import names
from models.errors import XGenError

# About 200-250 XGen tokens of English prose: the size `ask` retrieved by until now.
PASSAGE_CHARS = 1000


@dataclass(frozen=True)
class Task:
    path: bytes
    old_sha256: str | None  # of the indexed version, if any


class Passage(NamedTuple):
    """One passage, its fields in schema.PASSAGE_COLUMNS order after `seq` (a tuple: it
    crosses from the worker to the parent and into SQLite with no per-field work)."""

    start_char: int
    end_char: int
    start_line: int | None
    end_line: int | None
    start_page: int | None
    end_page: int | None
    text: str


@dataclass
class Outcome:
    """What became of one file. `status`: "indexed" (passages), "same" (content unchanged),
    "skipped" (why), "changed" (modified while read: try again next run), "gone"."""

    path: bytes
    status: str
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    sha256: str | None = None
    kind: str | None = None
    why: str | None = None
    passages: list[Passage] = field(default_factory=list)


def _why(exc: XGenError, name: str) -> str:
    """The loader's message without the file name it starts with (the path is shown beside it)."""
    text = one_line(exc)
    return text[len(name):].lstrip(" :") if text.startswith(name) else text


def extract(task: Task, max_bytes: int = DEFAULT_MAX_BYTES) -> Outcome:
    path = task.path
    name = names.shown(os.path.basename(path))
    try:
        f = open_regular(path, name)
    except FileNotFoundError:
        return Outcome(path, "gone")
    except OSError as exc:
        return Outcome(path, "skipped", why=f"cannot be read: {exc.strerror or one_line(exc)}")
    except XGenError as exc:
        return Outcome(path, "skipped", why=_why(exc, name))
    with f:
        before = os.fstat(f.fileno())
        if before.st_size > max_bytes:
            return Outcome(path, "skipped", before.st_size, before.st_mtime_ns, before.st_ino,
                           why=f"too large: {format_size(before.st_size)} (the limit is {format_size(max_bytes)})")
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            return Outcome(path, "skipped", why=f"cannot be read: {exc.strerror or one_line(exc)}")
        after = os.fstat(f.fileno())
    fingerprint = (after.st_size, after.st_mtime_ns, after.st_ino)
    if (before.st_size, before.st_mtime_ns) != fingerprint[:2] or len(data) != after.st_size:
        return Outcome(path, "changed", *fingerprint,
                       why="changed while it was being read; it is read again on the next run")
    sha = hashlib.sha256(data).hexdigest()
    if sha == task.old_sha256:
        return Outcome(path, "same", *fingerprint, sha256=sha)
    try:
        doc = document_from_bytes(data, source=names.as_str(path), name=name, max_bytes=max_bytes)
    except XGenError as exc:
        return Outcome(path, "skipped", *fingerprint, sha256=sha, why=_why(exc, name))
    del data
    return Outcome(path, "indexed", *fingerprint, sha256=sha, kind=doc.kind, passages=passages_of(doc))


def _spans(doc) -> list[tuple[int, int, int | None]]:
    """(start, end, page) of each passage: a PDF's passages never cross a page (a citation
    names one page), a text file's are cut anywhere."""
    if not doc.pages:
        return [(c.start, c.end, None) for c in split_document(doc, PASSAGE_CHARS, len)]
    out = []
    edges = [*doc.pages, len(doc.text)]
    for number, (a, b) in enumerate(zip(edges, edges[1:]), 1):
        if b > a:
            page = dataclasses.replace(doc, text=doc.text[a:b], pages=())
            out.extend((a + c.start, a + c.end, number) for c in split_document(page, PASSAGE_CHARS, len))
    return out


def passages_of(doc) -> list[Passage]:
    """The document cut into passages of at most PASSAGE_CHARS characters, with their lines
    (or page, for a PDF). Whitespace-only pieces are dropped."""
    out = []
    for a, b, page in _spans(doc):
        text = doc.text[a:b]
        if text.strip():
            first, last = (None, None) if page is not None else doc.span_lines(a, b)
            out.append(Passage(a, b, first, last, page, page, text))
    return out
