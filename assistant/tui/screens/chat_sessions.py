"""The chat screen's sessions and files: open, switch, clear; attach and re-read files.

A mixin of ChatScreen (screens/chat.py), kept apart to keep each module short.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work

from assistant.tui import tasks
from assistant.session import absolute
from assistant.tui.events import FilesLoaded
from assistant.tui.screens.attach import AttachScreen
from assistant.tui.screens.dialogs import ConfirmScreen, TextScreen
from assistant.tui.screens.picker import PickerScreen
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.sidebar import Sidebar
from models.errors import XGenError

if TYPE_CHECKING:
    from assistant.tui.app import XGenApp
    from assistant.tui.widgets.conversation import ConversationView
    from assistant.tui.widgets.status import StatusBar


class SessionsAndFiles:
    """Needs from the screen: xgen, view, status, busy, notify, query_one, app."""

    xgen: "XGenApp"
    view: "ConversationView"
    status: "StatusBar"
    busy: str
    _reading_files: bool

    # -- sessions ------------------------------------------------------------------------

    async def start(self, files: list[str], session_id: str | None) -> None:
        store = self.xgen.store
        if files:
            await self.new_session()
            self.attach_paths(files)
        elif session_id or (recent := store.list_sessions(1)):
            await self.open_session(session_id or recent[0].id)
        else:
            await self.new_session()

    def refresh_sidebar(self) -> None:
        conversation = self.xgen.conversation
        store = self.xgen.store
        conversation.refresh()
        sessions = store.list_sessions()
        for i, s in enumerate(sessions):
            if not s.title:
                names = [f.name for f in store.files(s.id)]
                if names:
                    more = f" +{len(names) - 1}" if len(names) > 1 else ""
                    sessions[i] = replace(s, title=names[0] + more)
        found = self.query(Sidebar)
        if not found:
            return  # the app is closing
        sidebar = found.first()
        sidebar.show_sessions(sessions, conversation.session_id)
        sidebar.show_files(conversation.files())

    def _refuse_while_busy(self) -> bool:
        if self.busy:
            self.notify("XGen is still writing. Esc stops it.", severity="warning")
        return bool(self.busy)

    async def open_session(self, session_id: str) -> None:
        if self._refuse_while_busy():
            return
        try:
            reopened = self.xgen.conversation.open(session_id)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot open the session", severity="error")
            return
        await self.view.show(reopened.messages)
        self.query_one(Composer).set_history([m.content for m in reopened.messages if m.role == "user"])
        self.refresh_sidebar()
        self.status.reset()
        if reopened.files:
            self._reading_files = True
            self.read_session_files(reopened.session.id)

    async def new_session(self) -> None:
        if self._refuse_while_busy():
            return
        self.xgen.conversation.new()
        await self._show_new_session()

    async def _show_new_session(self) -> None:
        await self.view.show([])
        self.query_one(Composer).set_history([])
        self.refresh_sidebar()
        self.status.reset()

    async def action_new_session(self) -> None:
        await self.new_session()
        self.query_one(Composer).focus()

    def action_switch_session(self) -> None:
        sessions = self.xgen.store.list_sessions()
        if not sessions:
            self.notify("No saved sessions yet.")
            return
        options = [(s.id, f"{s.title or '(untitled)'}  · {s.message_count} messages") for s in sessions]
        self.app.push_screen(PickerScreen("Switch session", options, highlighted=self.xgen.conversation.session_id),
                             callback=self._switch_chosen)

    async def _switch_chosen(self, session_id: str | None) -> None:
        if session_id:
            await self.open_session(session_id)

    @on(Sidebar.SessionChosen)
    async def session_chosen(self, event: Sidebar.SessionChosen) -> None:
        if event.session_id != self.xgen.conversation.session_id:
            await self.open_session(event.session_id)

    async def action_clear(self) -> None:
        """Start afresh with the same files; the conversation so far stays saved."""
        if self._refuse_while_busy():
            return
        conversation = self.xgen.conversation
        kept = bool(conversation.summary_sources)
        conversation.clear(self.xgen.loaded)  # quick: the files are neither read nor counted again
        await self._show_new_session()
        self.notify("Cleared: the model starts afresh" + (" with the same files." if kept else "."))

    # -- rename, delete --------------------------------------------------------------------

    def action_rename_session(self) -> None:
        session = self.xgen.conversation.session
        if session is None:
            self.notify("Nothing to rename yet: this session is empty.", severity="warning")
            return
        self.app.push_screen(TextScreen("Rename this session", session.title, "Enter renames · Esc cancels"),
                             callback=self._rename_chosen)

    def _rename_chosen(self, title: str | None) -> None:
        session = self.xgen.conversation.session
        if not title or session is None:
            return
        try:
            self.xgen.store.rename_session(session.id, title)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot rename the session", severity="error")
            return
        self.refresh_sidebar()
        self.notify(self.xgen.conversation.session.title, title="Renamed")

    def action_delete_session(self) -> None:
        if self._refuse_while_busy():
            return
        sessions = self.xgen.store.list_sessions()
        if not sessions:
            self.notify("No saved sessions yet.")
            return
        options = [(s.id, f"{s.title or '(untitled)'}  · {s.message_count} messages") for s in sessions]
        self.app.push_screen(PickerScreen("Delete which session?", options,
                                          highlighted=self.xgen.conversation.session_id,
                                          hint="Enter asks to confirm · Esc cancels"),
                             callback=self._delete_picked)

    def _delete_picked(self, session_id: str | None) -> None:
        if not session_id:
            return
        try:
            session = self.xgen.store.get_session(session_id)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot delete the session", severity="error")
            return
        title = session.title or "(untitled)"
        message = (f"Its {session.message_count} messages, its list of files and its summaries are removed "
                   "for good (the files themselves stay).")
        self.app.push_screen(ConfirmScreen(f"Delete “{title}”?", message),
                             callback=lambda yes: self._delete_confirmed(session_id, title) if yes else None)

    async def _delete_confirmed(self, session_id: str, title: str) -> None:
        if self._refuse_while_busy():
            return
        try:
            self.xgen.store.delete_session(session_id)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot delete the session", severity="error")
            return
        if session_id == self.xgen.conversation.session_id:
            await self.new_session()
        else:
            self.refresh_sidebar()
        self.notify(title, title="Deleted")

    # -- files ---------------------------------------------------------------------------

    def action_detach_file(self) -> None:
        if self._refuse_while_busy():
            return
        files = self.xgen.conversation.files()
        if not files:
            self.notify("No file is attached to this session.", severity="warning")
            return
        self.app.push_screen(PickerScreen("Detach which file?", [(f.path, f"{f.name}  ({f.path})") for f in files],
                                          hint="Enter detaches it (the file itself stays) · Esc cancels"),
                             callback=self._detach_chosen)

    def _detach_chosen(self, path: str | None) -> None:
        if not path or self._refuse_while_busy():
            return
        try:
            self.xgen.conversation.detach(path)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot detach the file", severity="error")
            return
        self.refresh_sidebar()
        self.status.context_used = self.xgen.conversation.context_used
        self.notify(f"{Path(path).name}: the model no longer reads it; the conversation so far stays.",
                    title="Detached")

    def action_attach(self) -> None:
        self.app.push_screen(AttachScreen(), callback=self._attach_chosen)

    def _attach_chosen(self, path: str | None) -> None:
        if path:
            self.attach_paths([path])

    def _attached_paths(self) -> set[str]:
        conversation = self.xgen.conversation
        return {f.path for f in conversation.files()} | {d.source for d in conversation.summary_sources}

    def _say_already_attached(self, name: str) -> None:
        self.notify(f"{name} is already attached to this session.", title="Already attached", severity="warning")

    def attach_paths(self, paths: list[str]) -> None:
        attached, fresh = self._attached_paths(), []
        for path in map(absolute, paths):
            if str(path) in attached or path in fresh:
                self._say_already_attached(path.name)
            else:
                fresh.append(path)
        if not fresh:
            return
        self._reading_files = True
        self.status.activity = "reading files…"
        self.read_new_files(fresh)

    @work(thread=True, group="files")
    def read_new_files(self, paths: list[Path]) -> None:
        tasks.add_files(self.xgen.conversation, paths, self.xgen.loaded, self.post_message)

    @work(thread=True, exclusive=True, group="session-files")
    def read_session_files(self, session_id: str) -> None:
        tasks.read_session_files(self.xgen.conversation, session_id, self.post_message)

    async def on_files_loaded(self, event: FilesLoaded) -> None:
        self._reading_files = False
        if not self.busy:
            self.status.activity = ""
        conversation = self.xgen.conversation
        read = event.read
        if event.session_id is not None and event.session_id != conversation.session_id:
            return  # the user moved on to another session meanwhile
        for note in read.notes:
            self.notify(note, title="Note", severity="warning", timeout=10)
        if event.session_id is not None:
            for problem in read.problems:
                self.notify(problem, title="A file of this session", severity="warning", timeout=8)
            await self.send_pending()
            return
        for name in read.already:
            self._say_already_attached(name)  # attached meanwhile (two reads of it in flight)
        for source in read.files:
            count = read.n_tokens.get(source.source)
            self.notify(f"{source.name}: {count:,} tokens" if count is not None else source.name, title="Attached")
        if read.context_reset:
            self.notify("The model starts a fresh context with the new file; the conversation stays saved.")
        for problem in read.problems:
            self.notify(problem, title="Cannot attach the file", severity="error", timeout=10)
        self.status.context_used = conversation.context_used
        self.refresh_sidebar()
        await self.send_pending()
