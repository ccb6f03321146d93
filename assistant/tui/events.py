"""Messages from worker threads to the UI (posting a message is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from assistant.modelref import LoadedModel
from assistant.session import FilesRead
from assistant.store import Message as StoredMessage


@dataclass
class TurnStarted(Message):
    """The core has saved a question (None for a summary) and the reply being written."""

    question: StoredMessage | None
    reply: StoredMessage


@dataclass
class TurnFailed(Message):
    """Refused before anything was saved, or failed before its first word and taken back
    out of the store: the question (None for a summary), why, and the ids of the messages
    shown meanwhile (to take off the screen)."""

    question: str | None
    error: str
    shown: tuple[int, ...] = ()


@dataclass
class ReplyText(Message):
    message_id: int
    text: str
    generated: int = 0  # tokens written so far in this reply (0: not counted)


@dataclass
class ReplyDone(Message):
    message_id: int
    text: str
    meta: dict[str, Any]
    error: str | None = None
    save_error: str | None = None  # the reply is on screen but could not be saved
    context_used: int = 0


@dataclass
class SummaryProgress(Message):
    message_id: int
    stage: str  # the core's stages (assistant/summarize.py ProgressFn); "prompt": tokens read in a part
    done: int
    total: int


@dataclass
class FilesLoaded(Message):
    """Files read and attached by a worker (the core counted their tokens there): new
    attachments, or the files of a reopened session."""

    read: FilesRead
    session_id: str | None = None  # set when re-reading a session's files


@dataclass
class Indexing(Message):
    """Where the library index is while files and folders are attached: files found by
    the walk so far (`total` 0), or files read out of the total; None when it is done."""

    done: int | None
    total: int = 0


@dataclass
class ModelLoaded(Message):
    model: LoadedModel


@dataclass
class ModelFailed(Message):
    ref: str | None
    error: str
    no_model: bool = False
