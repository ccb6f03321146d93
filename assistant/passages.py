"""What a conversation asks about: files and folders, as passages of the library index.

A file or folder attached to a conversation is a root of the library index
(assistant/library): attaching one brings the index up to date for it (a stat walk when
nothing changed), and each question searches the index across all of them, so a second
question on an 18 MB file costs a search, not a re-read. Where a passage is comes from
the index (lines, or pages for a PDF); it is cited by the name the user knows: a file's
name, or the path from the attached folder's name (`cases/smith/notes.txt:3-9`).

Standard input is no file the index could watch: its text (kept in the store) is cut into
the same passages and searched the same way in a temporary index of this run
(assistant/library/memory.py).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from assistant.documents import Document, load_document
from assistant.library import IndexDatabase, names, question_query, search, update_library
from assistant.library.retrieve import counted
from assistant.library.catalog import resolve, totals
from assistant.library.events import Event
from assistant.library.memory import MemoryIndex
from assistant.library.scope import every, file_state, indexed_files, size
from assistant.library.search import Hit, query_words
from assistant.safetext import shown_name
from models.errors import XGenError

STDIN = "<stdin>"
_STDIN_KEY = b"/<stdin>"  # its name in the memory index (an absolute-looking key, as paths are)
OnEvent = Callable[[Event], None]


@dataclass(frozen=True)
class Found:
    """One passage of the attached files: which file (`source`: its absolute path, or
    <stdin>), the name it is cited by, its lines (or pages), text and XGen tokens."""

    source: str
    name: str
    start_line: int | None
    end_line: int | None
    start_page: int | None
    end_page: int | None
    text: str
    n_tokens: int

    @property
    def key(self) -> tuple:
        """The same passage, whichever search found it (JSON-safe: sessions keep it)."""
        digest = hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return self.source, self.start_line, self.end_line, self.start_page, self.end_page, digest

    def location(self, last: "Found | None" = None) -> str:
        """Where it is (through `last`, of the same file): "name:12-30", "name p.3-4"."""
        last = last or self
        if self.start_page is not None:
            first, end = self.start_page, last.end_page
            return f"{self.name} p.{first}" if first == end else f"{self.name} p.{first}-{end}"
        if self.start_line is not None:
            return f"{self.name}:{self.start_line}-{last.end_line}"
        return self.name

    def as_json(self) -> dict:
        return {"path": self.source, "start_line": self.start_line, "end_line": self.end_line,
                "page": self.start_page}


@dataclass(frozen=True)
class Attached:
    """A file, folder or standard input text the conversation asks about. `root` is its
    resolved path in the index; `n_tokens` a file's tokens (0 for a folder), `n_files` a
    folder's indexed files (as of the last time the index was brought up to date)."""

    source: str
    name: str
    kind: str  # "file", "folder" or "stdin"
    root: bytes
    sha256: str = ""
    n_tokens: int = 0
    n_files: int = 0  # a folder's indexed files


@dataclass
class Attaching:
    """What `Scope.attach` found: the new entries, and one line per path it could not take."""

    attached: list[Attached] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stopped: bool = False


def _refusal(source: str) -> str | None:
    """Why the document reader refuses a file the index left out, in its own words (the
    messages `ask` always gave: "notes.pdf is not a PDF: ..."); None if it reads it."""
    try:
        load_document(source)
    except XGenError as exc:
        return str(exc)
    return None


class Scope:
    """The attached files and folders, and the passages they hold. Safe to share between a
    worker attaching files and one asking (calls are serialized)."""

    def __init__(self):
        self.items: list[Attached] = []
        self._memory: MemoryIndex | None = None
        # The library index, opened once (opening checks it, which costs more than a search).
        self._library: IndexDatabase | None = None
        self._lock = threading.RLock()
        self.current = False  # brought up to date since the last question

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def roots(self) -> list[bytes]:
        return [a.root for a in self.items if a.kind != "stdin"]

    def has(self, source: str) -> bool:
        return any(a.source == source for a in self.items)

    # -- attaching --------------------------------------------------------------------

    def attach(self, paths: Iterable[str | Path], *, on_event: OnEvent | None = None,
               stop: threading.Event | None = None) -> Attaching:
        """Attach files and folders (absolute paths, links kept as given), indexing what is
        new or changed. A path that does not exist, and a file the index leaves out (with
        its reason), is a problem; a folder's left-out files are a note."""
        out = Attaching()
        wanted: list[tuple[str, bytes, bool]] = []
        for path in paths:
            source = str(path)
            try:
                root = resolve(source)
            except XGenError as exc:
                out.problems.append(str(exc))
                continue
            wanted.append((source, root, os.path.isdir(root)))
        if not wanted:
            return out
        try:
            db = self._index()
            report = update_library([root for _, root, _ in wanted], on_event=on_event, stop=stop, db=db)
        except XGenError as exc:
            out.problems += [f"{Path(s).name}: {exc}" for s, _, _ in wanted]
            return out
        out.stopped = report.stopped
        for source, root, folder in wanted:
            name = shown_name(Path(source).name or source)
            if folder:
                files, _, _, skipped = totals(db, [root])
                out.attached.append(Attached(source, name, "folder", root, n_files=files))
                if skipped:
                    out.notes.append(f"{name}: {skipped:,} of {files + skipped:,} files left out (hidden, ignored, "
                                     f"not text or unreadable; `xgen index {source}` lists them)")
                continue
            state = file_state(db, root)
            if state.status == "indexed":
                out.attached.append(Attached(source, name, "file", root, state.sha256 or "", state.n_tokens))
            elif state.status == "skipped":
                out.problems.append(_refusal(source) or f"{name}: {state.why}")
            else:
                out.problems.append(f"{name}: it was not read (indexing was stopped)")
        with self._lock:
            for item in out.attached:
                if not any(a.source == item.source for a in self.items):
                    self.items.append(item)
            self.current = not report.stopped
        return out

    def attach_text(self, doc: Document) -> Attached:
        """Attach a text that is no file (standard input), searched in a memory index."""
        with self._lock:
            if self._memory is None:
                self._memory = MemoryIndex()
            self._memory.add(_STDIN_KEY, doc)
            self.items = [a for a in self.items if a.kind != "stdin"]
            item = Attached(STDIN, doc.name, "stdin", _STDIN_KEY, doc.sha256)
            self.items.append(item)
            return item

    def detach(self, source: str) -> None:
        with self._lock:
            self.items = [a for a in self.items if a.source != source]

    def clear(self) -> None:
        with self._lock:
            self.items = []
            if self._memory is not None:
                self._memory.close()
                self._memory = None

    def refresh(self, *, on_event: OnEvent | None = None, stop: threading.Event | None = None) -> None:
        """Bring the index up to date for the attached paths (unless attaching just did)."""
        with self._lock:
            if self.current or not self.roots:
                self.current = True
                return
            roots = list(self.roots)
        db = self._index()
        report = update_library(roots, on_event=on_event, stop=stop, db=db)
        with self._lock:
            self.items = [replace(a, n_files=totals(db, [a.root])[0]) if a.kind == "folder" else a
                          for a in self.items]
            self.current = not report.stopped  # stopped: the next question goes on with the rest

    def files_of(self, source: str) -> list[tuple[str, str]]:
        """(path, name it is cited by) of the indexed files of an attached folder, in path order."""
        item = next((a for a in self.items if a.source == source and a.kind == "folder"), None)
        if item is None:
            return []
        base = len(item.root.rstrip(names.SEP))
        return [(names.as_str(path), item.name + names.shown(path[base:]))
                for path, _ in indexed_files(self._index(), [item.root])]

    def in_folder(self, path: str) -> bool:
        """Whether `path` is a file under an attached folder."""
        try:
            raw = resolve(path)
        except XGenError:
            return False
        return any(a.kind == "folder" and names.is_within(raw, a.root) and raw != a.root for a in self.items)

    def _index(self) -> IndexDatabase:
        with self._lock:
            if self._library is None:
                self._library = IndexDatabase()
            return self._library

    # -- passages ---------------------------------------------------------------------

    def _stores(self) -> list[tuple[IndexDatabase, list[bytes]]]:
        """(database, roots) pairs to read: the library and the memory index."""
        stores: list[tuple[IndexDatabase, list[bytes]]] = []
        if self.roots:
            stores.append((self._index(), self.roots))
        if self._memory is not None and any(a.kind == "stdin" for a in self.items):
            stores.append((self._memory.db, [_STDIN_KEY]))
        return stores

    def _read(self, step: Callable[[IndexDatabase, list[bytes]], list]) -> list:
        out: list = []
        with self._lock:
            for db, roots in self._stores():
                out.append(step(db, roots))
        return out

    def size(self, count_tokens_below: int) -> tuple[int, int | None]:
        """(passages, tokens) of everything attached; tokens None when there are many."""
        parts = self._read(lambda db, roots: size(db, roots, count_tokens_below=count_tokens_below))
        passages = sum(p for p, _ in parts)
        tokens = None if any(t is None for _, t in parts) else sum(t for _, t in parts)
        return passages, tokens

    def every(self, limit: int) -> list[Found]:
        """The first `limit` passages, file by file, each in reading order."""
        hits = [h for part in self._read(lambda db, roots: every(db, roots, limit=limit)) for h in part]
        return self._found(hits)[:limit]

    def retrieve(self, question: str, recent: Iterable[str] = (), limit: int = 40) -> list[Found]:
        """The best `limit` passages for the question and the recent questions, best first;
        [] when the text has no word to search for."""
        text = question_query(question, recent)
        if not query_words(text):
            return []
        parts = self._read(lambda db, roots: search(db, text, limit=limit, within=roots))
        hits = sorted([h for part in parts for h in part], key=lambda h: -h.score)  # stable: each's order kept
        return self._found(counted(hits[:limit]))[:limit]

    def _found(self, hits: list[Hit]) -> list[Found]:
        out, seen = [], set()
        for hit in hits:
            found = self._as_found(hit)
            if found is not None and found.key not in seen:
                seen.add(found.key)
                out.append(found)
        return out

    def _as_found(self, hit: Hit) -> Found | None:
        if hit.path == _STDIN_KEY:
            item = next((a for a in self.items if a.kind == "stdin"), None)
            source, name = STDIN, item.name if item else STDIN
        else:
            inside = [a for a in self.items if a.kind != "stdin" and names.is_within(hit.path, a.root)]
            if not inside:
                return None
            item = max(inside, key=lambda a: len(a.root))
            if item.kind == "file":
                source, name = item.source, item.name
            else:
                source = names.as_str(hit.path)
                name = item.name + names.shown(hit.path[len(item.root.rstrip(names.SEP)):])
        return Found(source, name, hit.start_line, hit.end_line, hit.start_page, hit.end_page, hit.text,
                     hit.n_tokens)

    def close(self) -> None:
        with self._lock:
            self.clear()
            if self._library is not None:
                self._library.close()
                self._library = None
