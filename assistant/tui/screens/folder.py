"""The files of an attached folder, narrowed as you type; Enter summarizes the one chosen.

A case folder holds thousands of files, so the list shows at most SHOWN rows at a time
(typing narrows it) and filtering is a substring test on names prepared once: a keystroke
costs the same with 10,000 files as with 100."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from assistant.tui.text import shown

SHOWN = 300  # rows listed at once


class FolderScreen(ModalScreen[str | None]):
    """Dismisses with the chosen file's path, or None on Esc. `files` are (path, the path
    shown: from the folder's name)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, name: str, files: list[tuple[str, str]]):
        super().__init__()
        self.folder_name = name
        self.files = files
        self._keys = [label.casefold() for _, label in files]  # what a filter is matched against

    def compose(self):
        with Vertical(classes="dialog", id="folder-dialog"):
            yield Label(shown(f"{self.folder_name}: {len(self.files):,} files indexed"), classes="dialog-title")
            yield Input(placeholder="Filter: part of a name or path", id="folder-filter")
            yield OptionList(id="folder-files", compact=True)
            yield Label("", id="folder-count")
            yield Label("Enter summarizes the file · ↑↓ choose · Esc closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.show_matching("")
        self.query_one("#folder-filter").focus()

    def matching(self, text: str) -> list[int]:
        """Indices of the files whose shown path holds every word of `text` (any case)."""
        words = text.casefold().split()
        return [i for i, key in enumerate(self._keys) if all(w in key for w in words)]

    def show_matching(self, text: str) -> None:
        found = self.matching(text)
        options = self.query_one("#folder-files", OptionList)
        options.clear_options()
        options.add_options([Option(shown(self.files[i][1]), id=self.files[i][0]) for i in found[:SHOWN]])
        if found:
            options.highlighted = 0
        more = len(found) - SHOWN
        self.query_one("#folder-count", Label).update(
            f"{len(found):,} match" + ("" if len(found) == 1 else "es") + (f"; the first {SHOWN} are listed: type to "
                                                                          "narrow" if more > 0 else ""))

    @on(Input.Changed, "#folder-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.show_matching(event.value)

    @on(Input.Submitted, "#folder-filter")
    def take_highlighted(self) -> None:
        options = self.query_one("#folder-files", OptionList)
        if options.highlighted is not None and options.option_count:
            self.dismiss(options.get_option_at_index(options.highlighted).id)

    def on_key(self, event) -> None:
        # Up and down move in the list while the filter keeps the focus.
        if event.key in ("up", "down") and self.query_one("#folder-filter").has_focus:
            options = self.query_one("#folder-files", OptionList)
            options.action_cursor_up() if event.key == "up" else options.action_cursor_down()
            event.stop()

    @on(OptionList.OptionSelected, "#folder-files")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
