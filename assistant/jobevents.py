"""What a job of the core (assistant/session.py) tells the face running it, as it goes.

A face passes a `JobEvents` to `Conversation.ask` or `Conversation.summarize`, overriding
the methods it shows; the others do nothing. The command line prints them; the app posts
them to its screen as Textual messages. Events come from the thread the job runs in (the
app runs jobs in workers), so a face's methods must be safe to call from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.library import Event
    from assistant.store import Message


class JobEvents:
    def saved(self, message: "Message") -> None:
        """A message was created or completed in the store: a question, or a reply or
        summary, which is first saved empty (its meta says "streaming") and then in full."""

    def text(self, piece: str) -> None:
        """The next piece of the reply or summary being written (one token's worth)."""

    def progress(self, stage: str, done: int, total: int) -> None:
        """Where a summary is: stage "map" (parts), "combine level N", "final", or "read"
        (bytes of a file read in parts; total 0 while the size is unknown, for stdin); and
        per call "call", "prompt" and "speed" (assistant/summarize.py ProgressFn)."""

    def withdrawn(self) -> None:
        """The question and its reply, saved before, were taken back out of the store: the
        answer failed before its first word (a server down), so nothing of the turn stays,
        as for a question refused by its checks."""

    def note(self, text: str) -> None:
        """Something the user should be told about the result (what was cut, left out or
        could not be saved). The result's `notes` hold the same lines."""

    def indexing(self, event: "Event") -> None:
        """The library index is being brought up to date for the attached files and
        folders: an event of assistant/library/events.py (Scanning, Progress, Skipped, Done)."""
