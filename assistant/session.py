"""One conversation, whichever face shows it: the core of `xgen ask` and of the app.

A `Conversation` owns the session's record in the store, its attached documents and the
model's view of them (a ChatSession). It does every step of the two jobs a user asks
for, in one place:

- a question: check it fits (nothing is stored for a question that cannot be answered),
  save it, stream the answer while saving it, record what was cut or stopped, and list
  the passages the model was given;
- a summary of one file into the session, saved as it streams.

Files are recorded with absolute paths and their sha256; text read from standard input
is kept in the store, so a session can be resumed from any directory, and from stdin.
A resumed session re-reads its files (a file that changed is re-read with a note) and
feeds its earlier turns back to the model as far as the context allows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat import Answer, ChatSession, Turn, default_answer_tokens
from assistant.documents import Document, load_document, load_stdin
from assistant.engines.base import OnText, SamplingSettings
from assistant.modelref import LoadedModel
from assistant.persist import ProgressiveSave, answer_meta
from assistant.store import AttachedFile, Message, Session, Store
from assistant.summarize import ProgressFn, Summarizer, SummaryForm, SummaryResult
from models.errors import XGenError

STDIN = "<stdin>"
ASK_SETTINGS = SamplingSettings(temperature=0.2)
SUMMARY_SETTINGS = SamplingSettings(temperature=0.3, top_k=40, top_p=0.9)


def absolute(path: str | Path, cwd: Path | None = None) -> Path:
    """The path as an absolute one (quotes from a paste removed, `~` expanded, links kept),
    so a session resumes from any directory."""
    p = Path(str(path).strip().strip("'\"")).expanduser()
    return p if p.is_absolute() else (cwd or Path.cwd()) / p


def load_file(path: str) -> Document:
    """A document for a path given by the user ("-" is standard input), its source absolute."""
    if path == "-":
        return load_stdin()
    return load_document(absolute(path))


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


@dataclass
class FilesRead:
    documents: list[Document] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # files that changed since they were attached
    problems: list[str] = field(default_factory=list)  # files that could not be read


class Conversation:
    """The open conversation. Nothing is written to the store until it has a question, a
    summary, or (with `attach(..., record=True)`) a file, so a question that fails its
    checks leaves no session behind."""

    def __init__(self, store: Store):
        self.store = store
        self.session: Session | None = None
        self.documents: list[Document] = []
        self._earlier: list[Turn] = []
        self._chat: ChatSession | None = None
        self._chat_key: tuple | None = None

    @property
    def session_id(self) -> str | None:
        return self.session.id if self.session else None

    # -- the session ----------------------------------------------------------------------

    def new(self) -> None:
        self.forget_context()
        self.session = None
        self.documents = []
        self._earlier = []

    def open(self, session_id: str) -> Reopened:
        """Open a saved session (its files are read by `read_files`, which may be slow)."""
        session = self.store.get_session(session_id)
        messages = self.store.messages(session.id)
        self.forget_context()
        self.session = session
        self.documents = []
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
        if self.session is None:
            self.session = self.store.create_session(
                model=model.name if model else "", engine=model.engine_name if model else "",
                model_ref=model.location if model else "")
            for doc in self.documents:
                self._record(doc)
        return self.session

    def files(self) -> list[AttachedFile]:
        return self.store.files(self.session.id) if self.session else []

    # -- files ----------------------------------------------------------------------------

    def read_files(self) -> FilesRead:
        """Re-read the open session's files; stdin text comes from the store."""
        found = FilesRead()
        for f in self.files():
            if f.path == STDIN:
                text = self.store.file_content(f.id)
                if text is None:
                    found.problems.append(f"{f.name}: its text was not kept; attach it again")
                    continue
                found.documents.append(Document(STDIN, f.name, "text", text, f.sha256))
                continue
            try:
                doc = load_document(f.path)
            except XGenError as exc:
                found.problems.append(f"{f.name}: {exc}")
                continue
            if doc.sha256 != f.sha256:
                found.notes.append(f"{f.name} changed since it was attached; its current text is used")
                self.store.update_file(f.id, doc.sha256, self._count(doc))
            found.documents.append(doc)
        self.documents = found.documents
        self.forget_context()
        return found

    def set_documents(self, documents: list[Document]) -> None:
        self.documents = list(documents)
        self.forget_context()

    def has_document(self, doc: Document) -> bool:
        return any(d.source == doc.source and d.sha256 == doc.sha256 for d in self.documents)

    def attach(self, doc: Document, *, record: bool = True, model: LoadedModel | None = None) -> bool:
        """Add a document; False if it was attached already. With `record`, the session is
        created (if need be) and the file recorded now; else on the first question."""
        if self.has_document(doc):
            return False
        if record:
            self._ensure_session(model)
            self._record(doc)
        elif self.session is not None:
            self._record(doc)
        self.documents.append(doc)
        self.forget_context()  # passages are numbered once per ChatSession
        return True

    def detach(self, source: str) -> None:
        """Remove a file from the session (the conversation so far stays)."""
        self.documents = [d for d in self.documents if d.source != source]
        if self.session is not None:
            self.store.detach_file(self.session.id, source)
        self.forget_context()

    def document(self, name_or_path: str) -> Document | None:
        for doc in self.documents:
            if name_or_path in (doc.source, doc.name):
                return doc
        return None

    def _count(self, doc: Document) -> int:
        from assistant.chunking import xgen_token_counter

        return xgen_token_counter()(doc.text)

    def _record(self, doc: Document) -> AttachedFile:
        assert self.session is not None
        return self.store.attach_file(self.session.id, doc.source, doc.name, doc.sha256, self._count(doc),
                                      content=doc.text if doc.source == STDIN else None)

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
        """The model's view, kept across questions so follow-ups reuse the engine's cache."""
        key = (id(model.engine), answer_tokens, settings)
        if self._chat is None or self._chat_key != key:
            self.forget_context()
            tokens = answer_tokens or default_answer_tokens(model.engine.n_ctx)
            self._chat = ChatSession(model.engine, self.documents, style=model.style, answer_tokens=tokens,
                                     settings=settings, earlier=self._earlier)
            self._chat_key = key
        return self._chat

    # -- jobs -----------------------------------------------------------------------------

    def ask(self, model: LoadedModel, question: str, *, stop: threading.Event | None = None,
            on_text: OnText | None = None, answer_tokens: int | None = None,
            settings: SamplingSettings = ASK_SETTINGS,
            on_saved: Callable[[Message, Message], None] | None = None) -> tuple[Answer, Message | None]:
        """Answer a question about the attached files, saving it as it streams.

        Raises before anything is stored when the question is empty, does not fit, or
        leaves no room for a passage. `on_saved(question, reply)` is called once both
        messages exist (the app shows them then). An interrupted or failed generation
        keeps what was written; a session created for this question and left with no
        answer at all is removed again.
        """
        chat = self.chat(model, answer_tokens=answer_tokens, settings=settings)
        prepared = chat.prepare(question)
        created = self.session is None
        session = self._ensure_session(model)
        user = self.store.add_message(session.id, "user", prepared.question)
        reply = self.store.add_message(session.id, "assistant", "", meta={"finish": "streaming"})
        if on_saved is not None:
            on_saved(user, reply)
        saver = ProgressiveSave(self.store, reply.id)
        try:
            answer = chat.complete(prepared, stop=stop, on_text=saver.tee(on_text))
        except BaseException as exc:
            if created and not saver.text:
                self._forget_session(session)
            else:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
                saver.finish(saver.text, {"finish": reason, "error": str(exc) or type(exc).__name__})
            raise
        saved = saver.finish(answer.text, answer_meta(answer, chat.context_used, model.engine.n_ctx))
        if saver.error:
            answer.notes.append(f"the answer could not be saved: {saver.error}")
        return answer, saved

    def summarize(self, model: LoadedModel, doc: Document, form: SummaryForm, *,
                  stop: threading.Event | None = None, on_text: OnText | None = None,
                  on_progress: ProgressFn | None = None, settings: SamplingSettings = SUMMARY_SETTINGS,
                  on_saved: Callable[[Message], None] | None = None) -> tuple[SummaryResult | None, Message]:
        """Summarize an attached file into the session (a "summary" message saved as it streams).

        Returns (result, message); result is None when the summary failed (the error is
        in the message's meta and re-raised)."""
        session = self._ensure_session(model)
        base = {"file": doc.name, "path": doc.source, "form": form.kind}
        message = self.store.add_message(session.id, "summary", "", meta=base | {"finish": "streaming"})
        if on_saved is not None:
            on_saved(message)
        saver = ProgressiveSave(self.store, message.id)
        try:
            result = summarize_document(model, doc, form, self.store, stop=stop, on_text=saver.tee(on_text),
                                        on_progress=on_progress, settings=settings, session_id=session.id)
        except BaseException as exc:
            saver.finish(saver.text, base | {"finish": "error", "error": str(exc) or type(exc).__name__})
            raise
        text = result.text or partial_text(result.partials)
        meta = base | {"stats": result.stats.as_dict(), "finish": "stopped" if result.stopped else "eos",
                       "notes": result.notes}
        saved = saver.finish(text, meta)
        return result, saved or message

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
    result = summarizer.summarize(doc, form, stop=stop, on_text=on_text, on_progress=on_progress)
    result.notes[:0] = doc.notes  # what the reader could not take in (failed PDF pages) comes first
    if result.text and not result.stopped and doc.sha256:
        store.add_summary(session_id, doc.source, doc.sha256, form.kind, result.text)
    return result
