"""The part of a conversation (assistant/session.py) that attaches what questions are about:
files and folders through the library index (assistant/passages.py), standard input's
text (kept in the store), and text files over the load limit (for summaries only).

`Conversation` is made of this and its jobs; the state used here is set up by its
`__init__` (store, scope, session, the texts and large files, the lock).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from assistant.documents import Document, LargeTextFile, over_load_limit
from assistant.files import (STDIN, FilesRead, absolute, read_source, too_large_to_ask)
from assistant.jobevents import JobEvents
from assistant.modelref import LoadedModel
from assistant.passages import Attached, Attaching
from assistant.store import AttachedFile
from models.errors import XGenError


class AttachedFiles:
    """Attaching and detaching files and folders (mixed into `Conversation`)."""

    # -- files and folders ----------------------------------------------------------------

    def add_files(self, paths: Iterable[str | Path], *, model: LoadedModel | None = None,
                  record: bool = True, large: bool = True, events: JobEvents | None = None,
                  stop: threading.Event | None = None) -> FilesRead:
        """Attach files and folders ("-" is standard input): the library index is brought
        up to date for them first (events get its progress; `stop` ends it, keeping what
        was indexed). Run it in a worker: a new folder takes a while. Never raises for a
        path the user gave: what could not be attached is in `problems`, one line each.

        With `record`, the session is created (if need be) and the files recorded now;
        else with the first question. A text file over the load limit is attached for
        summaries only (with a note), or with `large=False` is a problem."""
        events = events or JobEvents()
        found = FilesRead()
        on_disk: list[Path] = []
        for path in paths:
            try:
                if str(path) == "-":
                    self._add_source(read_source(path), found, record=record, model=model, large=large)
                    continue
                where = absolute(path)
                if self.scope.has(str(where)) or any(f.source == str(where) for f in self.large_files):
                    found.already.append(where.name)
                elif over_load_limit(where):
                    self._add_source(read_source(where), found, record=record, model=model, large=large)
                elif not self.kept:  # `xgen summarize`: files are read for their summaries, not indexed
                    source = read_source(where)
                    found.files.append(source)
                    found.notes += list(source.notes)
                elif where not in on_disk:
                    on_disk.append(where)
            except XGenError as exc:
                found.problems.append(str(exc))
        if on_disk:
            attaching = self.scope.attach(on_disk, on_event=events.indexing, stop=stop)
            found.problems += attaching.problems
            found.notes += attaching.notes
            found.stopped = attaching.stopped
            with self._lock:
                found.context_reset = found.context_reset or (self.has_context and bool(attaching.attached))
                for item in attaching.attached:
                    if not self._keep_record(item, record=record, model=model, found=found):
                        continue
                    found.files.append(item)
                    found.n_tokens[item.source] = item.n_tokens
                if attaching.attached:
                    self.forget_context()
        return found

    def _add_source(self, source: Document | LargeTextFile, found: FilesRead, *, record: bool,
                    model: LoadedModel | None, large: bool) -> None:
        """Standard input, or a text file over the load limit (for summaries only)."""
        if isinstance(source, LargeTextFile) and not large:
            found.problems.append(too_large_to_ask(source))
            return
        n_tokens = self._counted(source) if isinstance(source, Document) else 0
        with self._lock:
            had_context = self.has_context
            try:
                attached = self.attach(source, record=record, model=model, n_tokens=n_tokens)
            except XGenError as exc:  # the store refused it (a full disk, the session deleted)
                found.problems.append(f"could not attach {source.name}: {exc}")
                return
        if not attached:
            found.already.append(source.name)
            return
        found.files.append(source)
        found.notes += list(source.notes)
        if isinstance(source, Document):
            found.n_tokens[source.source] = n_tokens
        else:
            found.notes.append(too_large_to_ask(source))
        found.context_reset = found.context_reset or had_context

    def _keep_record(self, item: Attached, *, record: bool, model: LoadedModel | None, found: FilesRead) -> bool:
        try:
            if record and self.kept:
                self._ensure_session(model)
                self._record(item)
            elif self.session is not None:
                self._record(item)
            return True
        except XGenError as exc:
            self.scope.detach(item.source)
            found.problems.append(f"could not attach {item.name}: {exc}")
            return False

    def read_files(self, events: JobEvents | None = None, stop: threading.Event | None = None) -> FilesRead:
        """Attach the open session's files and folders again, brought up to date in the
        index (stdin text comes from the store). A file that changed since it was attached
        is noted (its current text is used)."""
        events = events or JobEvents()
        found = FilesRead()
        records = self.files()
        on_disk = []
        for f in records:
            if f.path != STDIN:
                on_disk.append(Path(f.path))
                continue
            text = self.store.file_content(f.id)
            if text is None:
                found.problems.append(f"{f.name}: its text was not kept; attach it again")
                continue
            doc = Document(STDIN, f.name, "text", text, f.sha256)
            self._counted.known(doc, f.n_tokens)
            with self._lock:
                self.scope.attach_text(doc)
                self._texts[doc.source] = doc
            found.files.append(doc)
            found.n_tokens[doc.source] = f.n_tokens
        attaching = self.scope.attach(on_disk, on_event=events.indexing, stop=stop) if on_disk else Attaching()
        found.problems += [p for p in attaching.problems]
        found.notes += attaching.notes
        found.stopped = attaching.stopped
        by_source = {f.path: f for f in records}
        for item in attaching.attached:
            record = by_source.get(item.source)
            if record is not None and item.kind == "file" and record.sha256 != item.sha256:
                found.notes.append(f"{item.name} changed since it was attached; its current text is used")
                self.store.update_file(record.id, item.sha256, item.n_tokens)
            found.files.append(item)
            found.n_tokens[item.source] = item.n_tokens
        with self._lock:
            self.forget_context()
        return found

    def has_document(self, doc: Document | LargeTextFile | Attached) -> bool:
        if isinstance(doc, LargeTextFile):
            return any(f.source == doc.source for f in self.large_files)
        if isinstance(doc, Document) and doc.source == STDIN:
            known = self._texts.get(STDIN)
            return known is not None and known.sha256 == doc.sha256
        return self.scope.has(doc.source)

    def attach(self, doc: Document | LargeTextFile | Attached, *, record: bool = True,
               model: LoadedModel | None = None, n_tokens: int | None = None) -> bool:
        """Add standard input's text (a Document), or a large file (for this run's
        summaries, not recorded); False if it was attached already. Files and folders are
        attached by `add_files`, through the index. With `record`, the session is
        created (if need be) and the text recorded now; else on the first question."""
        with self._lock:
            if self.has_document(doc) or isinstance(doc, Attached):
                return False
            if isinstance(doc, LargeTextFile):
                self.large_files.append(doc)
                return True
            if n_tokens is not None:
                self._counted.known(doc, n_tokens)
            item = self.scope.attach_text(doc)
            self._texts[doc.source] = doc
            if (record and self.kept) or self.session is not None:
                self._ensure_session(model)
                self._record(item)
            self.forget_context()
            return True

    def detach(self, source: str) -> None:
        """Remove a file or folder from the session (the conversation so far stays)."""
        with self._lock:
            self.scope.detach(source)
            self._texts.pop(source, None)
            self.large_files = [f for f in self.large_files if f.source != source]
            if self.session is not None:
                self.store.detach_file(self.session.id, source)
            self.forget_context()

    def folder_files(self, source: str) -> list[tuple[str, str]]:
        """(path, name it is cited by) of the indexed files of an attached folder."""
        return self.scope.files_of(source)

    @property
    def summary_sources(self) -> list[Attached | LargeTextFile]:
        """What can be summarized: the attached files (not folders), then the large files;
        each has `source` and `name`, and `document` reads it."""
        return [*(a for a in self.scope.items if a.kind != "folder"), *self.large_files]

    def document(self, name_or_path: str) -> Document | LargeTextFile | None:
        """The file to summarize, read now (None if it is not attached, not in an attached
        folder, or cannot be read)."""
        if self.scope.in_folder(name_or_path):
            try:
                return read_source(name_or_path)
            except XGenError:
                return None
        for item in self.summary_sources:
            if name_or_path not in (item.source, item.name):
                continue
            if isinstance(item, LargeTextFile):
                return item
            if item.source in self._texts:
                return self._texts[item.source]
            try:
                return read_source(item.source)
            except XGenError:
                return None
        return None

    def _record(self, item: Attached) -> AttachedFile:
        assert self.session is not None
        text = self._texts.get(item.source) if item.kind == "stdin" else None
        n_tokens = self._counted(text) if text is not None else item.n_tokens
        return self.store.attach_file(self.session.id, item.source, item.name, item.sha256, n_tokens,
                                      content=text.text if text is not None else None,
                                      kind="folder" if item.kind == "folder" else "file")
