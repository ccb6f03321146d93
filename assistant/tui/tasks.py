"""The work done in worker threads: answering, summarizing, reading files.

Each function calls the core (assistant/session.py), which saves as it goes, and
reports to the UI through `post` (a widget's thread-safe post_message).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from textual.message import Message

from assistant.documents import load_document
from assistant.modelref import LoadedModel
from assistant.session import Conversation
from assistant.summarize import SummaryForm
from assistant.tui.events import FilesLoaded, ReplyDone, ReplyText, SummaryProgress, TurnFailed, TurnStarted
from models.errors import XGenError

Post = Callable[[Message], object]
T = TypeVar("T")


class TextRelay:
    """Passes streamed text to the UI in batches (every `interval` seconds), so rendering
    does not take CPU time from the model token by token."""

    def __init__(self, post: Post, interval: float = 0.05):
        self.post = post
        self.message_id: int | None = None  # known once the core has saved the reply
        self.interval = interval
        self.pending: list[str] = []
        self.generated = 0  # pieces streamed so far: one per token
        self._last = 0.0

    def add(self, piece: str) -> None:
        self.pending.append(piece)
        self.generated += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self.pending and self.message_id is not None:
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


def run_ask(conversation: Conversation, model: LoadedModel, question: str, stop: threading.Event,
            post: Post) -> None:
    relay = TextRelay(post)
    started: list[int] = []

    def on_saved(user, reply) -> None:
        relay.message_id = reply.id
        started.append(reply.id)
        post(TurnStarted(user, reply))

    result, error = _attempt(lambda: conversation.ask(model, question, stop=stop, on_text=relay.add,
                                                      on_saved=on_saved))
    relay.flush()
    if not started:  # refused before anything was saved (empty, too long, no room)
        post(TurnFailed(question, error or "the question was not sent"))
        return
    if result is None:
        post(ReplyDone(started[0], "", {"finish": "error", "error": error}, error=error))
        return
    answer, saved = result
    meta = saved.meta if saved is not None else {"finish": answer.stats.finish}
    post(ReplyDone(started[0], answer.text, meta, context_used=conversation.context_used,
                   save_error=None if saved is not None else "the answer could not be saved"))


def run_summary(conversation: Conversation, model: LoadedModel, doc, form: SummaryForm, stop: threading.Event,
                post: Post) -> None:
    relay = TextRelay(post)
    started: list[int] = []
    def on_saved(message) -> None:
        relay.message_id = message.id
        started.append(message.id)
        post(TurnStarted(None, message))

    def on_progress(stage: str, done: int, total: int) -> None:
        if started:
            post(SummaryProgress(started[0], stage, done, total))

    result, error = _attempt(lambda: conversation.summarize(model, doc, form, stop=stop, on_text=relay.add,
                                                            on_progress=on_progress, on_saved=on_saved))
    relay.flush()
    if not started:
        post(TurnFailed(None, error or "the summary did not start"))
        return
    if result is None:
        post(ReplyDone(started[0], "", {"finish": "error", "error": error}, error=error))
        return
    _, message = result
    post(ReplyDone(started[0], message.content, message.meta, context_used=conversation.context_used))


def read_new_files(paths: list[Path], post: Post) -> None:
    from assistant.chunking import xgen_token_counter

    loaded, problems, notes = [], [], []
    for path in paths:
        try:
            doc = load_document(path)
            loaded.append((doc, xgen_token_counter()(doc.text)))
            notes += list(doc.notes)
        except XGenError as exc:
            problems.append(f"{str(exc).rstrip('.')}. Check the path and attach it again with Ctrl+O.")
    post(FilesLoaded(loaded, problems, notes=notes))


def read_session_files(conversation: Conversation, session_id: str, post: Post) -> None:
    found = conversation.read_files()
    tokens = {f.path: f.n_tokens for f in conversation.files()}
    post(FilesLoaded([(d, tokens.get(d.source, 0)) for d in found.documents],
                     [f"{p}. Attach it again with Ctrl+O." for p in found.problems], session_id, found.notes))
