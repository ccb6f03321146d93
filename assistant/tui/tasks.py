"""The work done in worker threads: answering, summarizing, reading files.

Each function reports through `post` (a widget's thread-safe post_message) and saves
to the store as it goes, so a killed app keeps the question, the reply so far and
every finished part.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from textual.message import Message

from assistant.chat import Answer, ChatSession
from assistant.documents import Document, load_document
from assistant.engines.base import ContextOverflow
from assistant.store import AttachedFile, Store
from assistant.summarize import Summarizer, SummaryForm
from assistant.persist import ProgressiveSave, answer_meta
from assistant.tui.conversation import load_attached
from assistant.tui.events import FilesLoaded, ReplyDone, ReplyText, SummaryProgress
from assistant.tui.model import LoadedModel
from models.errors import XGenError

Post = Callable[[Message], object]
T = TypeVar("T")


class TextRelay:
    """Passes streamed text to the UI in batches (every `interval` seconds), so rendering
    does not take CPU time from the model token by token."""

    def __init__(self, post: Post, message_id: int, interval: float = 0.05):
        self.post = post
        self.message_id = message_id
        self.interval = interval
        self.pending: list[str] = []
        self._last = 0.0
        self.generated = 0  # one add() per generated token

    def add(self, piece: str) -> None:
        self.pending.append(piece)
        self.generated += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self.pending:
            self.post(ReplyText(self.message_id, "".join(self.pending), self.generated))
            self.pending = []


def _attempt(work: Callable[[], T]) -> tuple[T | None, str | None]:
    """work()'s result, or the message of what went wrong (never a traceback on screen)."""
    try:
        return work(), None
    except XGenError as exc:
        return None, str(exc)
    except Exception as exc:  # a bug must not lose what was written or kill the app
        return None, f"unexpected error ({type(exc).__name__}: {exc}); what was written so far is saved"


def _ask(chat: ChatSession, question: str, stop: threading.Event, on_text) -> Answer:
    # ChatSession fails with a bare ValueError (from BM25 on no passages) when a question
    # alone leaves no room in the context; say what the user can do instead.
    n_ctx, tokens = chat.engine.n_ctx, chat.engine.count_tokens(question)
    if tokens + chat.answer_tokens >= n_ctx:
        raise ContextOverflow(f"the question has {tokens:,} tokens but the context holds {n_ctx:,}, "
                              f"{chat.answer_tokens:,} of them kept for the reply; shorten the question")
    return chat.ask(question, stop=stop, on_text=on_text)


def run_ask(chat: ChatSession, question: str, message_id: int, store: Store, stop: threading.Event,
            post: Post) -> None:
    saver = ProgressiveSave(store, message_id)
    relay = TextRelay(post, message_id)

    def on_text(piece: str) -> None:
        saver.add(piece)
        relay.add(piece)

    answer, error = _attempt(lambda: _ask(chat, question, stop, on_text))
    relay.flush()
    if answer is None:
        meta = {"finish": "error", "error": error}
        saver.finish(saver.text, meta)
        post(ReplyDone(message_id, saver.text, meta, error=error, save_error=saver.error))
        return
    meta = answer_meta(answer, chat.context_used, chat.engine.n_ctx)
    saver.finish(answer.text, meta)
    post(ReplyDone(message_id, answer.text, meta, save_error=saver.error))


def partial_text(partials: list[str]) -> str:
    if not partials:
        return ""
    return "Summaries of the parts done so far:\n\n" + "\n\n".join(
        f"**Part {i}.** {text}" for i, text in enumerate(partials, 1))


def run_summary(model: LoadedModel, doc: Document, form: SummaryForm, message_id: int, session_id: str,
                store: Store, stop: threading.Event, post: Post) -> None:
    saver = ProgressiveSave(store, message_id)
    relay = TextRelay(post, message_id)
    base = {"file": doc.name, "path": doc.source, "form": form.kind}

    def on_text(piece: str) -> None:
        saver.add(piece)
        relay.add(piece)

    def on_progress(stage: str, done: int, total: int) -> None:
        post(SummaryProgress(message_id, stage, done, total))

    summarizer = Summarizer(model.engine, style=model.style, cache=store)
    result, error = _attempt(lambda: summarizer.summarize(doc, form, stop=stop, on_text=on_text,
                                                          on_progress=on_progress))
    relay.flush()
    if result is None:
        meta = base | {"finish": "error", "error": error}
        saver.finish(saver.text, meta)
        post(ReplyDone(message_id, saver.text, meta, error=error, save_error=saver.error))
        return
    text = result.text or partial_text(result.partials)
    meta = base | {"stats": result.stats.as_dict(), "finish": "stopped" if result.stopped else "eos",
                   "notes": result.notes}
    saver.finish(text, meta)
    if result.text and not result.stopped and saver.error is None:
        _, saver.error = _attempt(lambda: store.add_summary(session_id, doc.source, doc.sha256, form.kind,
                                                            result.text))
    post(ReplyDone(message_id, text, meta, save_error=saver.error))


def read_new_files(paths: list[Path], post: Post) -> None:
    from assistant.chunking import xgen_token_counter

    loaded, problems = [], []
    for path in paths:
        try:
            doc = load_document(path)
            loaded.append((doc, xgen_token_counter()(doc.text)))
        except XGenError as exc:
            problems.append(f"{str(exc).rstrip('.')}. Check the path and attach it again with Ctrl+O.")
    post(FilesLoaded(loaded, problems))


def read_session_files(session_id: str, files: list[AttachedFile], post: Post) -> None:
    docs, problems = load_attached(files)
    tokens = {f.path: f.n_tokens for f in files}
    post(FilesLoaded([(d, tokens.get(d.source, 0)) for d in docs],
                     [f"{p}. Attach it again with Ctrl+O." if "changed since" not in p else p for p in problems],
                     session_id))
