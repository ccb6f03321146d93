"""The work done in worker threads: answering, summarizing, reading files.

Each function runs a job of the core (assistant/session.py), which saves as it goes;
the job's events become messages to the UI through `post` (a widget's thread-safe
post_message).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from textual.message import Message

from assistant.modelref import LoadedModel
from assistant.session import Conversation, JobEvents, SummaryForm
from assistant.store import Message as StoredMessage
from assistant.tui.events import FilesLoaded, Indexing, ReplyDone, ReplyText, SummaryProgress, TurnFailed, TurnStarted
from assistant.tui.text import full_stop
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


class IndexRelay(JobEvents):
    """The index's progress as Indexing messages, at most every `interval` seconds."""

    def __init__(self, post: Post, interval: float = 0.2):
        self.post = post
        self.interval = interval
        self._last = 0.0

    def indexing(self, event) -> None:
        from assistant.library import Done, Progress, Scanning

        if isinstance(event, Done):
            self.post(Indexing(None))
            return
        now = time.monotonic()
        if now - self._last < self.interval or not isinstance(event, (Progress, Scanning)):
            return
        self._last = now
        self.post(Indexing(event.files, 0) if isinstance(event, Scanning) else
                  Indexing(event.files_done, event.files_total))


class Posted(JobEvents):
    """A job's events as the screen's messages: TurnStarted once the question (if any) and
    the reply exist, batched ReplyText, SummaryProgress; notes are in the reply's meta."""

    def __init__(self, post: Post):
        self.post = post
        self.relay = TextRelay(post)
        self.index = IndexRelay(post)  # a question first brings the attached folders up to date
        self.question: StoredMessage | None = None
        self.reply: StoredMessage | None = None  # as first saved (empty)
        self.final: StoredMessage | None = None  # as saved in full (None: the save failed)
        self.taken_back = False  # the core removed the question and reply again (nothing was written)

    def saved(self, message: StoredMessage) -> None:
        if message.role == "user":
            self.question = message
        elif self.reply is None:
            self.reply = message
            self.relay.message_id = message.id
            self.post(TurnStarted(self.question, message))
        else:
            self.final = message

    def text(self, piece: str) -> None:
        self.relay.add(piece)

    def withdrawn(self) -> None:
        self.taken_back = True

    def indexing(self, event) -> None:
        self.index.indexing(event)

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.reply is not None:
            self.post(SummaryProgress(self.reply.id, stage, done, total))

    def done(self, result: tuple[str, str] | None, error: str | None, failed: TurnFailed,
             context_used: int) -> None:
        """After the job, given its (text, finish) or its error: the reply finished (or
        failed), or the turn was refused before anything was saved."""
        self.relay.flush()
        if self.reply is None:  # refused before anything was saved (empty, too long, no room)
            self.post(failed)
        elif self.taken_back:  # failed before its first word: nothing stays, on screen either
            failed.shown = tuple(m.id for m in (self.question, self.reply) if m is not None)
            self.post(failed)
        elif result is None:  # failed midway: what was written stays on screen, as it is saved
            text, meta = (self.final.content, self.final.meta) if self.final else (
                "", {"finish": "error", "error": error})
            self.post(ReplyDone(self.reply.id, text, meta, error=error))
        elif self.final is None:
            text, finish = result
            self.post(ReplyDone(self.reply.id, text, {"finish": finish}, context_used=context_used,
                                save_error=f"the {'summary' if self.reply.role == 'summary' else 'answer'} could not be saved"))
        else:
            self.post(ReplyDone(self.reply.id, self.final.content, self.final.meta, context_used=context_used))


def run_ask(conversation: Conversation, model: LoadedModel, question: str, stop: threading.Event,
            post: Post) -> None:
    events = Posted(post)
    answer, error = _attempt(lambda: conversation.ask(model, question, events, stop))
    events.done((answer.text, answer.stats.finish) if answer else None, error, TurnFailed(question, error or "the question was not sent"),
                conversation.context_used)


def run_summary(conversation: Conversation, model: LoadedModel, source, form: SummaryForm,
                stop: threading.Event, post: Post) -> None:
    events = Posted(post)
    result, error = _attempt(lambda: conversation.summarize(model, source, form, events, stop))
    events.done((result.text, "stopped" if result.stopped else "eos") if result else None, error, TurnFailed(None, error or "the summary did not start"),
                conversation.context_used)


def add_files(conversation: Conversation, paths: list[Path], model: LoadedModel | None, post: Post,
              stop: threading.Event | None = None) -> None:
    read = conversation.add_files(paths, model=model, events=IndexRelay(post), stop=stop)
    # Found once the dialog is closed (a damaged PDF), or given on the command line.
    read.problems = [f"{full_stop(p)} Nothing of it was attached; Ctrl+O attaches a file." for p in read.problems]
    post(FilesLoaded(read))


def read_session_files(conversation: Conversation, session_id: str, post: Post,
                       stop: threading.Event | None = None) -> None:
    read = conversation.read_files(events=IndexRelay(post), stop=stop)
    read.problems = [f"{p}. Attach it again with Ctrl+O." for p in read.problems]
    post(FilesLoaded(read, session_id))
