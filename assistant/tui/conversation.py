"""The open session, independent of the widgets: its store records, its documents and
the model's view of it (a ChatSession), plus progressive saving of streamed replies.

Nothing here touches Textual, so it is safe to call from worker threads (the Store
serializes its own calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.chat import Answer, ChatSession
from assistant.documents import Document, load_document
from assistant.engines.base import Engine, GenerationStats, SamplingSettings
from assistant.store import AttachedFile, Message, Session, Store
from models.errors import XGenError

SAVE_INTERVAL = 0.5  # seconds between saves of a reply being written


def answer_tokens_for(engine: Engine) -> int:
    """Room kept for a reply: 512 tokens, less in small contexts."""
    return max(64, min(512, engine.n_ctx // 4))


def stats_meta(stats: GenerationStats) -> dict[str, Any]:
    return {"prompt_tokens": stats.prompt_tokens, "prompt_evaluated": stats.prompt_evaluated,
            "generated": stats.generated, "seconds": round(stats.seconds, 3),
            "seconds_to_first_token": round(stats.seconds_to_first_token, 3),
            "tokens_per_second": round(stats.tokens_per_second, 2)}


def answer_meta(answer: Answer, context_used: int, n_ctx: int) -> dict[str, Any]:
    return {"citations": [{"number": p.number, "label": p.label, "text": p.chunk.text} for p in answer.citations],
            "stats": stats_meta(answer.stats), "finish": answer.stats.finish, "notes": answer.notes,
            "context_used": context_used, "n_ctx": n_ctx}


class ProgressiveSave:
    """Saves a message as its text streams in: at most every `interval` seconds, so a
    killed app loses at most that much of a reply."""

    def __init__(self, store: Store, message_id: int, *, interval: float = SAVE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.message_id = message_id
        self.interval = interval
        self.clock = clock
        self.parts: list[str] = []
        self._last = clock()
        self.saves = 0
        self.error: str | None = None  # why saving failed (the reply goes on regardless)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, piece: str) -> None:
        self.parts.append(piece)
        if self.clock() - self._last >= self.interval:
            self.flush()

    def flush(self) -> None:
        self._last = self.clock()
        try:
            self.store.update_message(self.message_id, self.text)
        except XGenError as exc:  # a full disk or a deleted session must not stop the reply
            self.error = str(exc)
            return
        self.saves += 1

    def finish(self, content: str, meta: dict[str, Any]) -> Message | None:
        try:
            return self.store.update_message(self.message_id, content, meta)
        except XGenError as exc:
            self.error = str(exc)
            return None


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
            tokens = answer_tokens_for(engine)
            self._chat = ChatSession(engine, self.documents, style=style, answer_tokens=tokens,
                                     settings=SamplingSettings(temperature=0.2, max_tokens=tokens))
            self._chat_engine = engine
        return self._chat

    @property
    def context_used(self) -> int:
        return self._chat.context_used if self._chat is not None else 0
