"""The attach flow: the files of the open session, read in a worker thread.

A widget with nothing to draw. `attach` reads new files (Ctrl+O, `xgen chat FILE`),
`reread` the files of a reopened session; the core loads and counts each file once, in
the worker (seconds for 50 MB), never on the UI thread. When a read is done this widget
tells the user what was attached or went wrong, then posts `FilesChanged` for the screen
(its sidebar, the context, a message waiting to be sent). `detach` asks which file."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.message import Message
from textual.widget import Widget

from assistant.session import absolute
from assistant.tui import tasks
from assistant.tui.events import FilesLoaded
from assistant.tui.host import Host
from assistant.tui.screens.picker import PickerScreen
from models.errors import XGenError


class FileReader(Widget):
    DEFAULT_CSS = "FileReader { display: none; }"

    @dataclass
    class FilesChanged(Message):
        """Files were attached, re-read or detached: the sidebar and the context change."""

    def __init__(self, host: Host, *, id: str | None = None):
        super().__init__(id=id)
        self.host = host
        self._reads = 0  # reads in flight
        self._stop = threading.Event()  # Esc while a folder is indexed: keep what is indexed

    @property
    def reading(self) -> bool:
        return self._reads > 0

    def stop_reading(self) -> None:
        """Stop indexing after the files being read (what is indexed so far is attached)."""
        self._stop.set()

    def _started(self) -> None:
        if not self._reads:
            self._stop.clear()
        self._reads += 1

    def attached_paths(self) -> set[str]:
        conversation = self.host.conversation
        return {f.path for f in conversation.files()} | {d.source for d in conversation.summary_sources}

    def _say_already_attached(self, name: str) -> None:
        self.notify(f"{name} is already attached to this session.", title="Already attached", severity="warning")

    # -- reading -------------------------------------------------------------------------

    def attach(self, paths: list[str]) -> bool:
        """Read and attach the files not attached yet, in a worker; False if none is new."""
        attached, fresh = self.attached_paths(), []
        for path in map(absolute, paths):
            if str(path) in attached or path in fresh:
                self._say_already_attached(path.name)
            else:
                fresh.append(path)
        if not fresh:
            return False
        self._started()
        self._read_new(fresh)
        return True

    def reread(self) -> None:
        """Read the files of the session just opened (their text is not kept in the store)."""
        self._started()
        self._read_session(self.host.conversation.session_id)

    @work(thread=True, group="files")
    def _read_new(self, paths: list[Path]) -> None:
        tasks.add_files(self.host.conversation, paths, self.host.loaded, self.post_message, self._stop)

    @work(thread=True, exclusive=True, group="session-files")
    def _read_session(self, session_id: str | None) -> None:
        tasks.read_session_files(self.host.conversation, session_id, self.post_message, self._stop)

    def on_files_loaded(self, event: FilesLoaded) -> None:
        event.stop()
        self._reads = max(self._reads - 1, 0)
        read = event.read
        if event.session_id is not None and event.session_id != self.host.conversation.session_id:
            self.post_message(self.FilesChanged())  # the user moved on to another session meanwhile
            return
        for note in read.notes:
            self.notify(note, title="Note", severity="warning", timeout=10)
        if read.stopped:
            self.notify("Indexing stopped: questions search what was indexed so far, and the next "
                        "question goes on with the rest.", title="Stopped", severity="warning", timeout=10)
        if event.session_id is not None:
            for problem in read.problems:
                self.notify(problem, title="A file of this session", severity="warning", timeout=8)
        else:
            for name in read.already:
                self._say_already_attached(name)  # attached meanwhile (two reads of it in flight)
            for source in read.files:
                count = read.n_tokens.get(source.source)
                if getattr(source, "kind", "") == "folder":
                    self.notify(f"{source.name}/: {source.n_files:,} files; questions search them", title="Attached")
                else:
                    self.notify(f"{source.name}: {count:,} tokens" if count is not None else
                                f"{source.name}: Ctrl+S summarizes it", title="Attached")
            if read.context_reset:
                self.notify("The model starts a fresh context with the new file; the conversation stays saved.")
            for problem in read.problems:
                self.notify(problem, title="Cannot attach the file", severity="error", timeout=10)
        self.post_message(self.FilesChanged())

    # -- detaching -----------------------------------------------------------------------

    def detach(self) -> None:
        """Ask which file to detach (the file itself stays)."""
        conversation = self.host.conversation
        files = [(f.path, f"{f.name}  ({f.path})") for f in conversation.files()]
        files += [(f.source, f"{f.name}  ({f.source})") for f in conversation.large_files]
        if not files:
            self.notify("No file is attached to this session.", severity="warning")
            return
        self.app.push_screen(PickerScreen("Detach which file?", files,
                                          hint="Enter detaches it (the file itself stays) · Esc cancels"),
                             callback=self._detach_chosen)

    def _detach_chosen(self, path: str | None) -> None:
        if not path:
            return
        try:
            self.host.conversation.detach(path)
        except XGenError as exc:
            self.notify(str(exc), title="Cannot detach the file", severity="error")
            return
        self.post_message(self.FilesChanged())
        self.notify(f"{Path(path).name}: the model no longer reads it; the conversation so far stays.",
                    title="Detached")
