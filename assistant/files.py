"""Files as a conversation reads them: paths the user gave (made absolute, so a session
resumes from any directory), standard input, text files over the load limit (which only
a summary reads, in parts), and what reading them found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant.chunking import xgen_token_counter
from assistant.documents import (DEFAULT_MAX_BYTES, Document, LargeTextFile, first_look, open_for_summary,
                                 open_stdin_for_summary)
from assistant.documents.errors import format_size

STDIN = "<stdin>"


def absolute(path: str | Path, cwd: Path | None = None) -> Path:
    """The path as an absolute one (quotes from a paste removed, `~` expanded, links kept),
    so a session resumes from any directory."""
    p = Path(str(path).strip().strip("'\"")).expanduser()
    return p if p.is_absolute() else (cwd or Path.cwd()) / p


def read_source(path: str | Path) -> Document | LargeTextFile:
    """What a path given by the user holds ("-" is standard input), its source absolute: a
    Document, or a LargeTextFile for text over the load limit (read in parts, for summaries)."""
    if str(path) == "-":
        return open_stdin_for_summary()
    return open_for_summary(absolute(path))


def too_large_to_ask(large: LargeTextFile) -> str:
    size = f"{format_size(large.size)}; " if large.size is not None else ""
    return (f"{large.name} is too large to ask about ({size}the limit is {format_size(DEFAULT_MAX_BYTES)}): "
            "it can only be summarized, read in parts")


def summary_only_note(path: str | Path) -> str | None:
    """Before attaching the file at `path`, from its size and first bytes only (a dialog
    asks at once): for a text file over the load limit, the note that it can only be
    summarized; else None. Raises the loader's one-line XGenError when those bytes show
    it cannot be read (binary data, a format too large to read in parts)."""
    where = absolute(path)
    if not first_look(where):
        return None
    try:
        size: int | None = where.stat().st_size
    except OSError:  # gone meanwhile: the note without its size (attaching it then says why)
        size = None
    return too_large_to_ask(LargeTextFile(where, source=str(where), size=size))


@dataclass
class FilesRead:
    """What `add_files` (or `read_files`, for a reopened session) read and attached."""

    files: list = field(default_factory=list)  # in the order given: Attached (files, folders), Document
    # (standard input), LargeTextFile; each has `source` and `name`
    n_tokens: dict[str, int] = field(default_factory=dict)  # of each Document, by its source
    already: list[str] = field(default_factory=list)  # names of files that were attached already
    notes: list[str] = field(default_factory=list)  # what a reader left out; files changed since attached
    problems: list[str] = field(default_factory=list)  # one line per file that could not be read
    context_reset: bool = False  # the model's view starts afresh with the new files
    stopped: bool = False  # indexing was interrupted: what was indexed is attached

    @property
    def documents(self) -> list:
        """What questions can be about: files and folders (Attached), standard input (a Document)."""
        return [f for f in self.files if not isinstance(f, LargeTextFile)]

    @property
    def large(self) -> list[LargeTextFile]:
        """Text files over the load limit: they can be summarized (in parts), not asked about."""
        return [f for f in self.files if isinstance(f, LargeTextFile)]


class TokenCounts:
    """Each document's token count, counted once (seconds for a 50 MB file) and kept."""

    def __init__(self, count_tokens: Callable[[str], int] | None = None):
        self._count = count_tokens
        self._known: dict[tuple[str, str], int] = {}  # (source, sha256) -> tokens

    def known(self, doc: Document, n_tokens: int) -> None:
        self._known[(doc.source, doc.sha256)] = n_tokens

    def __call__(self, doc: Document) -> int:
        key = (doc.source, doc.sha256)
        if key not in self._known:
            count = self._count or xgen_token_counter()
            self._known[key] = count(doc.text)
        return self._known[key]
