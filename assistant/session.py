"""One conversation, whichever face shows it: the jobs of `xgen ask`, `xgen summarize` and
the app, end to end, reported through `JobEvents` (assistant/jobevents.py):

- `add_files`: read files (or stdin), count their tokens once, attach them; a text file
  over the load limit is kept for summaries only (read in parts);
- `ask`: check the question fits (a question that cannot be answered stores nothing),
  save it, stream the answer while saving it, note what was cut or left out;
- `summarize`: a summary of one file into the session, saved as it streams.

Files are recorded with absolute paths and their sha256; stdin text is kept in the
store, so a session resumes from any directory. A resumed session re-reads its files (a
changed one with a note) and gives the model its earlier turns as far as they fit. A
conversation made with `kept=False` keeps no session (`xgen summarize`).

The faces import the core's types from here, never from documents, chunking, summarize
or engines (pyproject.toml checks it).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.chat import Answer, ChatSession, Numbering, Turn, default_answer_tokens
from assistant.documents import Document, LargeTextFile
from assistant.engines.base import OnText, SamplingSettings
from assistant.files import (STDIN, FilesRead, TokenCounts, absolute, over_load_limit, read_source,
                             too_large_to_ask)
from assistant.jobevents import JobEvents
from assistant.modelref import LoadedModel
from assistant.passages import Attached, Attaching, Scope
from assistant.persist import ProgressiveSave, answer_meta
from assistant.sources import Sources
from assistant.store import AttachedFile, Message, Session, Store
from assistant.summarize import ProgressFn, Summarizer, SummaryForm, SummaryResult
from models.errors import XGenError

# What the faces use of the core's types, from the job module (see the module docstring).
__all__ = ["ASK_SETTINGS", "SUMMARY_SETTINGS", "Answer", "Conversation", "FilesRead", "JobEvents", "Reopened",
           "SamplingSettings", "Sources", "SummaryForm", "SummaryResult", "XGenError", "absolute"]

ASK_SETTINGS = SamplingSettings(temperature=0.2)
SUMMARY_SETTINGS = SamplingSettings(temperature=0.3, top_k=40, top_p=0.9)


def session_numbering(messages: list[Message]) -> Numbering:
    """The passage numbers a stored conversation gave (its replies' meta), to go on with."""
    numbering = Numbering()
    for m in messages:
        for entry in m.meta.get("numbered") or []:
            if isinstance(entry, list) and entry and isinstance(entry[0], int):
                numbering.seed(entry[0], tuple(entry[1:]))
        for c in m.meta.get("citations") or []:  # sessions saved before: never give their numbers again
            if isinstance(c.get("number"), int):
                numbering.next_number = max(numbering.next_number, c["number"] + 1)
        for g in m.meta.get("sources") or []:
            for n in re.findall(r"\[(\d+)\]", str(g.get("numbers", ""))):
                numbering.next_number = max(numbering.next_number, int(n) + 1)
    return numbering


def earlier_turns(messages: list[Message]) -> list[Turn]:
    """The question/answer pairs of a stored conversation (summaries and empty answers skipped)."""
    turns: list[Turn] = []
    question: str | None = None
    for m in messages:
        if m.role == "user":
            question = m.content
        elif m.role == "assistant" and question is not None:
            if m.content.strip():
                turns.append(Turn(question, m.content))
            question = None
    return turns


@dataclass
class Reopened:
    """What `Conversation.open` found: the record, its messages and files."""

    session: Session
    messages: list[Message]
    files: list[AttachedFile]


class Conversation:
    """The open conversation. Nothing is written to the store until it has a question, a
    summary, or (with `record=True`) a file, so a question that fails its checks leaves
    no session behind.

    Files and folders are asked about through the library index (assistant/passages.py);
    jobs may run in a worker thread (the app's). `count_tokens` counts standard input's
    tokens (XGen's tokenizer by default), once: the count is kept with it."""

    def __init__(self, store: Store, *, kept: bool = True, count_tokens: Callable[[str], int] | None = None):
        self.store = store
        self.kept = kept
        self.session: Session | None = None
        self.scope = Scope()
        self.numbering = Numbering()
        self.large_files: list[LargeTextFile] = []  # not recorded: summaries read them in parts, this run
        self._texts: dict[str, Document] = {}  # standard input, by source
        self._counted = TokenCounts(count_tokens)
        self._earlier: list[Turn] = []
        self._chat: ChatSession | None = None
        self._chat_key: tuple | None = None
        self._lock = threading.RLock()  # files are attached from workers while the UI reads them

    @property
    def session_id(self) -> str | None:
        return self.session.id if self.session else None

    @property
    def documents(self) -> list[Attached]:
        """What questions are about: the attached files, folders and standard input."""
        return list(self.scope.items)

    # -- the session ----------------------------------------------------------------------

    def new(self) -> None:
        self.forget_context()
        self.session = None
        self.scope.clear()
        self.numbering = Numbering()
        self.large_files = []
        self._texts = {}
        self._earlier = []

    def clear(self, model: LoadedModel | None = None) -> None:
        """Start a new session with the same files (the conversation so far stays saved).
        Nothing is read or counted again, so this is quick enough for a UI thread."""
        with self._lock:
            items, large, texts = list(self.scope.items), self.large_files, self._texts
            self.forget_context()
            self.session = None
            self._earlier = []
            self.numbering = Numbering()
            self.large_files, self._texts = list(large), dict(texts)
            if items:
                self._ensure_session(model)

    def open(self, session_id: str) -> Reopened:
        """Open a saved session (its files are attached by `read_files`, which may be slow)."""
        session = self.store.get_session(session_id)
        messages = self.store.messages(session.id)
        self.forget_context()
        self.session = session
        self.scope.clear()
        self.numbering = session_numbering(messages)
        self.large_files = []
        self._texts = {}
        self._earlier = earlier_turns(messages)
        return Reopened(session, messages, self.store.files(session.id))

    def refresh(self) -> None:
        """Re-read the session's record (its title comes with the first question)."""
        if self.session is not None:
            try:
                self.session = self.store.get_session(self.session.id)
            except XGenError:
                pass  # deleted by `xgen sessions delete` meanwhile: keep what is on screen

    def _ensure_session(self, model: LoadedModel | None) -> Session:
        """The session, created if need be; its model is recorded once one is known."""
        if self.session is None:
            assert self.kept, "a conversation that is not kept has no session"
            self.session = self.store.create_session(
                model=model.name if model else "", engine=model.engine_name if model else "",
                model_ref=model.location if model else "")
            for item in self.scope.items:
                self._record(item)
        elif model is not None and not self.session.model_ref:
            self.session = self.store.set_session_model(self.session.id, model.name, model.engine_name,
                                                        model.location)
        return self.session

    def files(self) -> list[AttachedFile]:
        return self.store.files(self.session.id) if self.session else []

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

    @property
    def summary_sources(self) -> list[Attached | LargeTextFile]:
        """What can be summarized: the attached files (not folders), then the large files;
        each has `source` and `name`, and `document` reads it."""
        return [*(a for a in self.scope.items if a.kind != "folder"), *self.large_files]

    def document(self, name_or_path: str) -> Document | LargeTextFile | None:
        """The file to summarize, read now (None if it is not attached or cannot be read)."""
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

    # -- the model's view -----------------------------------------------------------------

    @property
    def has_context(self) -> bool:
        return self._chat is not None and bool(self._chat.history)

    @property
    def context_used(self) -> int:
        return self._chat.context_used if self._chat is not None else 0

    def forget_context(self) -> None:
        if self._chat is not None:
            self._earlier = self._earlier + [Turn(a.question, a.text) for a in self._chat.history if a.text]
        self._chat = None
        self._chat_key = None

    def chat(self, model: LoadedModel, *, answer_tokens: int | None = None,
             settings: SamplingSettings = ASK_SETTINGS) -> ChatSession:
        """The model's view, kept across questions so follow-ups reuse the engine's cache.
        Passage numbers belong to the session, so they outlive a rebuilt view."""
        key = (id(model.engine), answer_tokens, settings)
        if self._chat is None or self._chat_key != key:
            self.forget_context()
            tokens = answer_tokens or default_answer_tokens(model.engine.n_ctx)
            self._chat = ChatSession(model.engine, self.scope, style=model.style, answer_tokens=tokens,
                                     settings=settings, earlier=self._earlier, numbering=self.numbering)
            self._chat_key = key
        return self._chat

    # -- jobs -----------------------------------------------------------------------------

    def ask(self, model: LoadedModel, question: str, events: JobEvents | None = None,
            stop: threading.Event | None = None, *, answer_tokens: int | None = None,
            settings: SamplingSettings = ASK_SETTINGS) -> Answer:
        """Answer a question about the attached files, saving it as it streams.

        Raises before anything is stored when the question is empty, does not fit, or
        leaves no room for a passage. Events: `saved(question)` and `saved(reply)` once
        both messages exist (the reply empty), `text` for each piece, then `saved(reply)`
        complete and a `note` for each of the answer's notes. An interrupted or failed
        generation keeps what was written; a session created for this question and left
        with no answer at all is removed again.
        """
        events = events or JobEvents()
        chat = self.chat(model, answer_tokens=answer_tokens, settings=settings)
        self.scope.refresh(on_event=events.indexing, stop=stop)  # files changed since the last question
        prepared = chat.prepare(question)
        created = self.session is None
        session = self._ensure_session(model)
        user = self.store.add_message(session.id, "user", prepared.question)
        reply = self.store.add_message(session.id, "assistant", "", meta={"finish": "streaming"})
        events.saved(user)
        events.saved(reply)
        saver = ProgressiveSave(self.store, reply.id)
        try:
            answer = chat.complete(prepared, stop=stop, on_text=saver.tee(events.text))
        except BaseException as exc:
            if created and not saver.text:
                self._forget_session(session)
            else:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
                self._saved(events, saver.finish(saver.text, {"finish": reason,
                                                              "error": str(exc) or type(exc).__name__}))
            raise
        saved = self._saved(events, saver.finish(answer.text, answer_meta(answer, chat.context_used,
                                                                          model.engine.n_ctx)))
        if saved is None:
            answer.notes.append(f"the answer could not be saved: {saver.error}")
        for note in answer.notes:
            events.note(note)
        self.scope.current = False  # the next question looks at the files again
        return answer

    def summarize(self, model: LoadedModel, source: Document | LargeTextFile | Attached, form: SummaryForm,
                  events: JobEvents | None = None, stop: threading.Event | None = None, *,
                  settings: SamplingSettings = SUMMARY_SETTINGS) -> SummaryResult:
        """Summarize a file (a large one is read in parts) into the session: a "summary"
        message saved as it streams; events as for `ask` (no question). A conversation
        that is not kept saves no message. The finished summary goes to the store's
        summaries. A failed summary keeps its error in the message's meta and raises."""
        events = events or JobEvents()
        if isinstance(source, Attached):  # an attached file, read now
            source = self._texts[source.source] if source.kind == "stdin" else read_source(source.source)
        if not self.kept:
            result = summarize_document(model, source, form, self.store, stop=stop, on_text=events.text,
                                        on_progress=events.progress, settings=settings)
        else:
            result = self._summarize_kept(model, source, form, events, stop, settings)
        for note in result.notes:
            events.note(note)
        return result

    def _summarize_kept(self, model: LoadedModel, source: Document | LargeTextFile, form: SummaryForm,
                        events: JobEvents, stop: threading.Event | None, settings: SamplingSettings) -> SummaryResult:
        session = self._ensure_session(model)
        base = {"file": source.name, "path": source.source, "form": form.kind}
        message = self.store.add_message(session.id, "summary", "", meta=base | {"finish": "streaming"})
        events.saved(message)
        saver = ProgressiveSave(self.store, message.id)
        try:
            result = summarize_document(model, source, form, self.store, stop=stop, on_text=saver.tee(events.text),
                                        on_progress=events.progress, settings=settings, session_id=session.id)
        except BaseException as exc:
            self._saved(events, saver.finish(saver.text, base | {"finish": "error",
                                                                 "error": str(exc) or type(exc).__name__}))
            raise
        meta = base | {"stats": result.stats.as_dict(), "finish": "stopped" if result.stopped else "eos",
                       "notes": result.notes}
        if self._saved(events, saver.finish(result.text or partial_text(result.partials), meta)) is None:
            result.notes.append(f"the summary could not be saved: {saver.error}")
        return result

    @staticmethod
    def _saved(events: JobEvents, message: Message | None) -> Message | None:
        if message is not None:
            events.saved(message)
        return message

    def _forget_session(self, session: Session) -> None:
        try:
            self.store.delete_session(session.id)
        except XGenError:
            pass  # already gone; nothing to forget
        if self.session is not None and self.session.id == session.id:
            self.session = None


def partial_text(partials: list[str]) -> str:
    if not partials:
        return ""
    return "Summaries of the parts done so far:\n\n" + "\n\n".join(
        f"**Part {i}.** {text}" for i, text in enumerate(partials, 1))


def summarize_document(model: LoadedModel, doc: Any, form: SummaryForm, store: Store, *,
                       stop: threading.Event | None = None, on_text: OnText | None = None,
                       on_progress: ProgressFn | None = None, settings: SamplingSettings = SUMMARY_SETTINGS,
                       session_id: str | None = None) -> SummaryResult:
    """Summarize a document (or a file too large to load, read in windows) with the store as
    the cache of partial summaries; a finished summary is kept in the store."""
    summarizer = Summarizer(model.engine, style=model.style, cache=store, settings=settings)
    method = summarizer.summarize_stream if isinstance(doc, LargeTextFile) else summarizer.summarize
    result = method(doc, form, stop=stop, on_text=on_text, on_progress=on_progress)
    result.notes[:0] = doc.notes  # what the reader could not take in (failed PDF pages) comes first
    if result.text and not result.stopped and doc.sha256:
        store.add_summary(session_id, doc.source, doc.sha256, form.kind, result.text)
    return result
