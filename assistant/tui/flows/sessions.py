"""The sessions of the chat screen: start, open, new, clear, switch, rename, delete.

A widget with nothing to draw. It changes the conversation (in a worker thread where the
store may be slow: Clear records the files again) and asks in dialogs; then it posts
`Shown` with the messages of the session now open (the screen shows them) or `Changed`
when only the list of sessions changed. The screen refuses these while a reply runs
(`refuse` is its check).

Another app may use the same data folder: a session it has open is not reopened at
start (a new one is), and is opened on request with a warning; every second the store
is asked (cheaply) whether another app wrote, so the list follows, and a session deleted
elsewhere leaves it at once (the next question starts a new session)."""


from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from textual import work
from textual.message import Message
from textual.widget import Widget

from assistant.store import Message as StoredMessage
from assistant.store import Session, Store
from assistant.tui.host import Host
from assistant.tui.screens.dialogs import ConfirmScreen, TextScreen
from assistant.tui.screens.picker import PickerScreen
from models.errors import XGenError

ELSEWHERE_AT_START = ("Your last session is open in another xgen window, so this is a new one "
                      "(Ctrl+P → Switch session opens it anyway).")
ELSEWHERE = "This session is also open in another xgen window: both write into it."
DELETED = ("This session was deleted in another window or by `xgen sessions delete`: "
           "a new one starts here (its files stay attached).")
WATCH_SECONDS = 1.0


def listed_sessions(store: Store) -> list[Session]:
    """The saved sessions, most recent first; an untitled one is named after its files."""
    sessions = store.list_sessions()
    for i, s in enumerate(sessions):
        if not s.title:
            names = [f.name for f in store.files(s.id)]
            if names:
                more = f" +{len(names) - 1}" if len(names) > 1 else ""
                sessions[i] = replace(s, title=names[0] + more)
    return sessions


def _choices(sessions: list[Session]) -> list[tuple[str, str]]:
    return [(s.id, f"{s.title or '(untitled)'}  · {s.message_count} messages") for s in sessions]


class Sessions(Widget):
    DEFAULT_CSS = "Sessions { display: none; }"

    @dataclass
    class Shown(Message):
        """Another session is open (or a new, empty one): show its messages."""

        messages: list[StoredMessage]
        has_files: bool  # its files are to be read again (FileReader.reread)
        note: str = ""  # a toast once it is shown

    @dataclass
    class Changed(Message):
        """The list of sessions changed (renamed, deleted)."""

    def __init__(self, host: Host, refuse: Callable[[], bool], busy: Callable[[], bool], *, id: str | None = None):
        super().__init__(id=id)
        self.host = host
        self.refuse = refuse  # True (after telling the user) while a reply runs
        self.busy = busy  # the same, silently
        self._version = -1  # the store's data_version last seen

    def on_mount(self) -> None:
        self.set_interval(WATCH_SECONDS, self.watch_store)

    def watch_store(self) -> None:
        """Follow what another app wrote: the list of sessions, and the open one deleted."""
        try:
            version = self.host.store.data_version()
            if version == self._version:
                return
            self._version = version
            deleted = self.host.conversation.deleted_elsewhere
        except XGenError:
            return
        if deleted and self.busy():
            self._version = -1  # looked at again once the reply is done
        elif deleted:  # its messages leave the screen too: a new session, as Clear makes
            self._clear(DELETED)
        self.post_message(self.Changed())

    def start(self, files: list[str], session_id: str | None) -> bool:
        """The session the app opens on: a new one for `files` (True: attach them), else
        `session_id` or the most recent one."""
        recent = [] if files or session_id else self.host.store.list_sessions(1)
        if files or not (session_id or recent):
            self.new()
            return bool(files)
        self.open(session_id or recent[0].id, at_start=not session_id)
        return False

    def open(self, session_id: str, *, at_start: bool = False) -> None:
        """Open a session; one open in another app is opened with a warning, except the
        most recent one at start, which gives way to a new session."""
        if self.refuse():
            return
        try:
            reopened = self.host.conversation.open(session_id)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot open the session", severity="error")
            return
        if reopened.open_elsewhere and at_start:
            self.new(ELSEWHERE_AT_START)
            return
        self.post_message(self.Shown(reopened.messages, bool(reopened.files),
                                     ELSEWHERE if reopened.open_elsewhere else ""))

    def new(self, note: str = "") -> None:
        if self.refuse():
            return
        self.host.conversation.new()
        self.post_message(self.Shown([], False, note))

    def clear(self) -> None:
        """Start afresh with the same files; the conversation so far stays saved."""
        if not self.refuse():
            self._clear("Cleared: the model starts afresh")

    @work(thread=True, exclusive=True, group="sessions")
    def _clear(self, note: str) -> None:
        # A new session records the files again: store writes, off the UI thread.
        conversation = self.host.conversation
        kept = bool(conversation.summary_sources)
        try:
            conversation.clear(self.host.loaded)
        except XGenError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Cannot clear", severity="error")
            return
        self.post_message(self.Shown([], False, note if note.endswith(".") else
                                     note + (" with the same files." if kept else ".")))

    # -- pickers and dialogs ---------------------------------------------------------------

    def switch(self) -> None:
        sessions = self.host.store.list_sessions()
        if not sessions:
            self.notify("No saved sessions yet.")
            return
        self.app.push_screen(PickerScreen("Switch session", _choices(sessions),
                                          highlighted=self.host.conversation.session_id),
                             callback=lambda chosen: self.open(chosen) if chosen else None)

    def rename(self) -> None:
        session = self.host.conversation.session
        if session is None:
            self.notify("Nothing to rename yet: this session is empty.", severity="warning")
            return
        self.app.push_screen(TextScreen("Rename this session", session.title, "Enter renames · Esc cancels"),
                             callback=self._rename_chosen)

    def _rename_chosen(self, title: str | None) -> None:
        conversation = self.host.conversation
        if not title or conversation.session is None:
            return
        try:
            self.host.store.rename_session(conversation.session.id, title)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot rename the session", severity="error")
            return
        conversation.refresh()
        self.post_message(self.Changed())
        self.notify(conversation.session.title, title="Renamed")

    def delete(self) -> None:
        if self.refuse():
            return
        sessions = self.host.store.list_sessions()
        if not sessions:
            self.notify("No saved sessions yet.")
            return
        self.app.push_screen(PickerScreen("Delete which session?", _choices(sessions),
                                          highlighted=self.host.conversation.session_id,
                                          hint="Enter asks to confirm · Esc cancels"),
                             callback=self._delete_picked)

    def _delete_picked(self, session_id: str | None) -> None:
        if not session_id:
            return
        try:
            session = self.host.store.get_session(session_id)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot delete the session", severity="error")
            return
        title = session.title or "(untitled)"
        message = (f"Its {session.message_count} messages, its list of files and its summaries are removed "
                   "for good (the files themselves stay).")
        self.app.push_screen(ConfirmScreen(f"Delete “{title}”?", message),
                             callback=lambda yes: self._delete_confirmed(session_id, title) if yes else None)

    def _delete_confirmed(self, session_id: str, title: str) -> None:
        if self.refuse():
            return
        try:
            self.host.store.delete_session(session_id)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot delete the session", severity="error")
            return
        if session_id == self.host.conversation.session_id:
            self.new()
        else:
            self.post_message(self.Changed())
        self.notify(title, title="Deleted")
