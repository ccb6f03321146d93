"""The open session, independent of the widgets: its store records, its documents and
the model's view of it (a ChatSession), plus progressive saving of streamed replies.

Nothing here touches Textual, so it is safe to call from worker threads (the Store
serializes its own calls).
"""

from __future__ import annotations

from pathlib import Path

from assistant.chat import ChatSession, default_answer_tokens
from assistant.documents import Document, load_document
from assistant.engines.base import Engine, SamplingSettings
from assistant.store import AttachedFile, Message, Session, Store
from models.errors import XGenError

def load_attached(files: list[AttachedFile]) -> tuple[list[Document], list[str]]:
    """Re-read a session's files: the documents that load and one message per problem."""
    docs, problems = [], []
    for f in files:
        try:
            doc = load_document(f.path)
        except XGenError as exc:
            problems.append(f"{f.name}: {exc}")
            continue
        if doc.sha256 != f.sha256:
            problems.append(f"{f.name} changed since it was attached; the current version is used")
        docs.append(doc)
    return docs, problems


def resolve_path(text: str, cwd: Path | None = None) -> Path:
    path = Path(text.strip().strip("'\"")).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    return path.resolve()


class Conversation:
    """The session on screen. A new session is only written to the store when it gets
    its first message or file, so opening and closing the app leaves no empty sessions."""

    def __init__(self, store: Store):
        self.store = store
        self.session: Session | None = None
        self.documents: list[Document] = []
        self._chat: ChatSession | None = None
        self._chat_engine: Engine | None = None

    @property
    def session_id(self) -> str | None:
        return self.session.id if self.session else None

    def new(self) -> None:
        self.session = None
        self.documents = []
        self.forget_context()

    def open(self, session_id: str) -> tuple[Session, list[Message], list[AttachedFile]]:
        session = self.store.get_session(session_id)
        self.session = session
        self.documents = []
        self.forget_context()
        return session, self.store.messages(session.id), self.store.files(session.id)

    def refresh(self) -> None:
        """Re-read the session's record (its title comes with the first question)."""
        if self.session is not None:
            try:
                self.session = self.store.get_session(self.session.id)
            except XGenError:
                pass  # deleted by `xgen sessions delete` meanwhile: keep what is on screen

    def ensure_session(self, model: str = "", engine: str = "") -> Session:
        if self.session is None:
            self.session = self.store.create_session(model=model, engine=engine)
        return self.session

    def files(self) -> list[AttachedFile]:
        return self.store.files(self.session.id) if self.session else []

    def set_documents(self, documents: list[Document]) -> None:
        self.documents = list(documents)
        self.forget_context()

    def attach(self, doc: Document, n_tokens: int, model: str = "", engine: str = "") -> AttachedFile:
        session = self.ensure_session(model, engine)
        record = self.store.attach_file(session.id, doc.source, doc.name, doc.sha256, n_tokens)
        if all(d.sha256 != doc.sha256 or d.source != doc.source for d in self.documents):
            self.documents.append(doc)
            self.forget_context()  # passages are numbered once per ChatSession
        return record

    def document(self, name_or_path: str) -> Document | None:
        for doc in self.documents:
            if name_or_path in (doc.source, doc.name):
                return doc
        return None

    # -- the model's view -------------------------------------------------------------

    @property
    def has_context(self) -> bool:
        return self._chat is not None and bool(self._chat.history)

    def forget_context(self) -> None:
        self._chat = None
        self._chat_engine = None

    def chat(self, engine: Engine, style) -> ChatSession:
        if self._chat is None or self._chat_engine is not engine:
            tokens = default_answer_tokens(engine.n_ctx)
            self._chat = ChatSession(engine, self.documents, style=style, answer_tokens=tokens,
                                     settings=SamplingSettings(temperature=0.2, max_tokens=tokens))
            self._chat_engine = engine
        return self._chat

    @property
    def context_used(self) -> int:
        return self._chat.context_used if self._chat is not None else 0

    # --- added for the TUI (wip-tui) ---
    def detach(self, path: str) -> None:
        """Remove an attached file from the session: its record and its document.
        A minimal version until the store has a method for it (the files table, directly)."""
        if self.session is not None:
            with self.store._write() as db:
                db.execute("DELETE FROM files WHERE session_id = ? AND path = ?", (self.session.id, path))
        kept = [d for d in self.documents if d.source != path]
        if len(kept) != len(self.documents):
            self.documents = kept
            self.forget_context()  # passages are numbered once per ChatSession
