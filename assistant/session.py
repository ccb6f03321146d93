"""One conversation, whichever face shows it: the jobs of `xgen ask`, `xgen summarize` and
the app, end to end, reported through `JobEvents` (assistant/jobevents.py):

- `add_files` (assistant/attachments.py): attach files and folders, brought up to date
  in the library index (or stdin, kept in the store); a text file over the load limit
  is kept for summaries only (read in parts);
- `ask`: check the question fits (a question that cannot be answered stores nothing),
  save it, stream the answer while saving it, note what was cut or left out;
- `summarize`: a summary of one file into the session, saved as it streams.

Files and folders are recorded with absolute paths (files with their sha256); stdin
text is kept in the store, so a session resumes from any directory. A resumed session
attaches its files and folders again, brought up to date (a changed file with a note),
keeps its passage numbers, and gives the model its earlier turns as far as they fit. A
conversation made with `kept=False` keeps no session (`xgen summarize`).

The faces import the core's types from here, never from documents, chunking, summarize
or engines (pyproject.toml checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assistant.attachments import AttachedFiles
from assistant.chat import (Answer, ChatSession, Numbering, Turn, default_answer_tokens, earlier_turns,
                            session_numbering)
from assistant.documents import Document, LargeTextFile
from assistant.engines.base import OnText, SamplingSettings
from assistant.files import FilesRead, TokenCounts, absolute, read_source
from assistant.jobevents import JobEvents
from assistant.modelref import LoadedModel
from assistant.passages import Attached, Scope
from assistant.persist import ProgressiveSave, answer_meta
from assistant.sources import Sources
from assistant.store import AttachedFile, Message, Session, SessionClaims, Store
from assistant.summarize import ProgressFn, Summarizer, SummaryFailed, SummaryForm, SummaryResult
from models.errors import XGenError

# What the faces use of the core's types, from the job module (see the module docstring).
__all__ = ["ASK_SETTINGS", "SUMMARY_SETTINGS", "Answer", "Conversation", "FilesRead", "JobEvents", "Reopened",
           "SamplingSettings", "Sources", "SummaryForm", "SummaryResult", "XGenError", "absolute"]

ASK_SETTINGS = SamplingSettings(temperature=0.2)
SUMMARY_SETTINGS = SamplingSettings(temperature=0.3, top_k=40, top_p=0.9)


@dataclass
class Reopened:
    """What `Conversation.open` found: the record, its messages and files."""

    session: Session
    messages: list[Message]
    files: list[AttachedFile]
    open_elsewhere: bool = False  # another app has it open too (with `claims`)


class Conversation(AttachedFiles):
    """The open conversation. Nothing is written to the store until it has a question, a
    summary, or (with `record=True`) a file, so a question that fails its checks leaves
    no session behind.

    Files and folders are asked about through the library index (assistant/passages.py);
    jobs may run in a worker thread (the app's). `count_tokens` counts standard input's
    tokens (XGen's tokenizer by default), once: the count is kept with it."""

    def __init__(self, store: Store, *, kept: bool = True, count_tokens: Callable[[str], int] | None = None,
                 claims: SessionClaims | None = None):
        self.store = store
        self.claims = claims  # the app's: sessions open in another app are told apart
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
        self.model: LoadedModel | None = None  # the model in use (use_model), recorded with new sessions

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
        self._claim(None)
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
        return Reopened(session, messages, self.store.files(session.id), not self._claim(session.id))

    def _claim(self, session_id: str | None) -> bool:
        """Hold the session now open (and no other); False if another app holds it too."""
        if self.claims is None:
            return True
        self.claims.release(keep=session_id)
        return session_id is None or self.claims.claim(session_id)

    @property
    def deleted_elsewhere(self) -> bool:
        """The open session was deleted by another app or `xgen sessions delete`."""
        return self.session is not None and not self.store.has_session(self.session.id)

    def close(self) -> None:
        """Let go of the library index and of the session held (a conversation can be used
        again after: it reopens them)."""
        self.scope.close()
        self._claim(None)

    def refresh(self) -> None:
        """Re-read the session's record (its title comes with the first question)."""
        if self.session is not None:
            try:
                self.session = self.store.get_session(self.session.id)
            except XGenError:
                pass  # deleted by `xgen sessions delete` meanwhile: keep what is on screen

    def use_model(self, model: LoadedModel) -> None:
        """The model in use from now on (the app loads it while files are read): recorded
        at once with the open session if it has none yet (files attached first), and with
        every session created after, so a session reopens with its model however it began."""
        with self._lock:
            self.model = model
            if self.session is not None and not self.session.model_ref:
                try:
                    self._ensure_session(model)
                except XGenError:
                    pass  # deleted elsewhere meanwhile: the next question starts a new session

    def _ensure_session(self, model: LoadedModel | None) -> Session:
        """The session, created if need be; its model is recorded once one is known."""
        model = model or self.model
        if self.deleted_elsewhere:
            self.session = None  # the next question (or file) starts a new session, with the same files
        if self.session is None:
            assert self.kept, "a conversation that is not kept has no session"
            self.session = self.store.create_session(
                model=model.name if model else "", engine=model.engine_name if model else "",
                model_ref=model.location if model else "")
            self._claim(self.session.id)
            for item in self.scope.items:
                self._record(item)
        elif model is not None and not self.session.model_ref:
            self.session = self.store.set_session_model(self.session.id, model.name, model.engine_name,
                                                        model.location)
        return self.session

    def files(self) -> list[AttachedFile]:
        return self.store.files(self.session.id) if self.session else []

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
        generation keeps what was written; one that wrote nothing at all stores nothing:
        the question and reply are removed again (`withdrawn`), with the session if it was
        created for this question.
        """
        events = events or JobEvents()
        chat = self.chat(model, answer_tokens=answer_tokens, settings=settings)
        self.scope.refresh(on_event=events.indexing, stop=stop)  # files changed since the last question
        prepared = chat.prepare(question)
        before = self.session_id
        session = self._ensure_session(model)
        created = session.id != before  # new, or made anew for a session deleted elsewhere
        user, reply = self.store.add_exchange(session.id, prepared.question, {"finish": "streaming"})
        events.saved(user)
        events.saved(reply)
        saver = ProgressiveSave(self.store, reply.id)
        try:
            answer = chat.complete(prepared, stop=stop, on_text=saver.tee(events.text))
        except BaseException as exc:
            if not saver.text:
                self._withdraw(session, created, [user.id, reply.id], events)
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
            done = partial_text(exc.partials) if isinstance(exc, SummaryFailed) else ""  # kept, as when stopped
            self._saved(events, saver.finish(saver.text or done, base | {"finish": "error",
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

    def _withdraw(self, session: Session, created: bool, message_ids: list[int], events: JobEvents) -> None:
        try:
            if created:
                self._forget_session(session)
            else:
                self.store.delete_messages(message_ids)
        except XGenError:
            return  # the store cannot take them back: they stay, with the error
        events.withdrawn()

    def _forget_session(self, session: Session) -> None:
        try:
            self.store.delete_session(session.id)
        except XGenError:
            pass  # already gone; nothing to forget
        if self.session is not None and self.session.id == session.id:
            self.session = None
            self._claim(None)


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
