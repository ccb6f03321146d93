"""The sidebar: saved sessions (most recent first) and the files of the open one; a file
too large to ask about (over the load limit) is listed as one to summarize."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import events, on
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from assistant.store import AttachedFile, Session
from assistant.safetext import printable
from assistant.tui.text import plural, shown

NEW_SESSION = "(new session)"


def short_count(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


@dataclass(frozen=True)
class FileRow:
    """A file of the open session as the sidebar lists it."""

    path: str
    name: str
    detail: str  # dim, after the name: its tokens, or that it can only be summarized
    missing: bool = False  # no longer on disk (one stat per file at each refresh)

    @classmethod
    def attached(cls, f: AttachedFile, n_files: int | None = None) -> "FileRow":
        """A file with its tokens; a folder with its indexed files (None: not indexed yet);
        either marked "missing" once it is no longer on disk (standard input never is)."""
        if Path(f.path).is_absolute() and not Path(f.path).exists():
            return cls(f.path, f.name + "/" * f.is_folder, "missing", missing=True)
        if f.is_folder:
            files = "…" if n_files is None else plural(n_files, "file", short_count(n_files))
            return cls(f.path, f.name + "/", files)
        return cls(f.path, f.name, f"{short_count(f.n_tokens)} tok")

    def fitted(self, width: int) -> Content:
        """The row in `width` columns: the detail always shown, the name shortened in its
        middle (so its end and extension stay) when both do not fit."""
        detail = f"  {printable(self.detail)}"
        name = printable(self.name)
        room = max(width - len(detail), 4)
        if width > 0 and len(name) > room:  # 0: the sidebar is hidden (fitted when it shows)
            head = (room - 1) // 2 + (room - 1) % 2
            name = name[:head] + "…" + name[len(name) - (room - 1 - head):]
        return Content.assemble(name, (detail, "$text-error" if self.missing else "dim"))

    @classmethod
    def summary_only(cls, path: str, name: str, size: int | None) -> "FileRow":
        size_text = "" if not size else f"{size / 2**20:.0f} MB " if size >= 2**20 else f"{size / 2**10:.0f} KB "
        return cls(path, name, f"{size_text}^S only")


class Sidebar(Vertical):
    @dataclass
    class SessionChosen(Message):
        session_id: str

    @dataclass
    class FileChosen(Message):
        path: str

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._hint = ""  # the files' hint, shown when no indexing is
        self._indexing = False
        self._files: list[FileRow] = []  # shown again to fit a new width

    def compose(self):
        yield Label("Sessions", classes="section")
        yield OptionList(id="sessions", compact=True)
        yield Label("Files", classes="section", id="files-title")
        yield OptionList(id="files", compact=True)
        yield Label("", id="files-hint")

    def show_sessions(self, sessions: list[Session], current: str | None) -> None:
        options = self.query_one("#sessions", OptionList)
        options.clear_options()
        if current is None:
            options.add_option(Option(shown(NEW_SESSION), id="new"))
        for s in sessions:
            title = s.title or "(untitled)"
            options.add_option(Option(shown(title), id=s.id))
        ids = [s.id for s in sessions]
        options.highlighted = 0 if current is None else (ids.index(current) if current in ids else None)

    def show_files(self, files: list[FileRow]) -> None:
        self._files = list(files)
        options = self.query_one("#files", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        # The list's width inside the sidebar: its left bar, and a scrollbar past 8 rows.
        width = self.content_region.width - 1 - (len(files) > 8)
        for f in files:
            options.add_option(Option(f.fitted(width), id=f.path))
        if highlighted is not None and highlighted < len(files):
            options.highlighted = highlighted
        options.display = bool(files)
        # At most 20 columns: the sidebar is 22 wide below 120 columns.
        self._hint = "Enter/^S: summary" if files else "None (^O attaches)"
        if not self._indexing:
            self.query_one("#files-hint", Label).update(self._hint)

    def on_resize(self) -> None:
        if self._files:
            self.show_files(self._files)

    def show_indexing(self, done: int | None, total: int = 0) -> None:
        """The index's progress under the files (at most 20 columns); None: done."""
        self._indexing = done is not None
        hint = self.query_one("#files-hint", Label)
        if done is None:
            hint.update(self._hint)
        elif not total:
            hint.update(f"scanning: {short_count(done)} files")
        else:
            hint.update(f"indexing {short_count(done)}/{short_count(total)}")

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # A list reached with Tab shows a selected row at once, so Enter acts on it.
        options = event.widget
        if isinstance(options, OptionList) and options.highlighted is None and options.option_count:
            options.highlighted = 0

    @property
    def highlighted_file(self) -> str | None:
        options = self.query_one("#files", OptionList)
        if options.highlighted is None or not options.option_count:
            return None
        return options.get_option_at_index(options.highlighted).id

    @on(OptionList.OptionSelected, "#sessions")
    def _session_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id and event.option.id != "new":
            self.post_message(self.SessionChosen(event.option.id))

    @on(OptionList.OptionSelected, "#files")
    def _file_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.FileChosen(event.option.id))
