"""Attach a file: type its path (Tab completes it) or pick it in the tree."""

from __future__ import annotations

import os
from pathlib import Path

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import DirectoryTree, Input, Label


def complete_path(value: str) -> str | None:
    """`value` with its last part completed from what is on disk (a folder gets a trailing
    separator); hidden entries only when the part starts with a dot."""
    if not value:
        return None
    head, sep, prefix = value.rpartition(os.sep)
    folder = Path(head + sep or ".").expanduser()
    try:
        names = sorted(entry.name for entry in os.scandir(folder)
                       if entry.name.startswith(prefix) and (prefix.startswith(".") or not entry.name.startswith(".")))
    except OSError:
        return None
    for name in names:
        completed = head + sep + name + (os.sep if (folder / name).is_dir() else "")
        if completed != value:
            return completed
    return None


class PathSuggester(Suggester):
    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value)


class PathInput(Input):
    """An Input whose Tab takes the suggested completion (and moves on when there is none)."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def __init__(self, value: str | None = None, **kwargs):
        super().__init__(value, suggester=PathSuggester(), **kwargs)

    def action_complete(self) -> None:
        suggestion = self._suggestion
        if suggestion and len(suggestion) > len(self.value) and self.cursor_at_end:
            self.value = suggestion
            self.cursor_position = len(suggestion)
        else:
            self.screen.focus_next()


class FileTree(DirectoryTree):
    def filter_paths(self, paths):
        return [p for p in paths if not p.name.startswith(".")]


class AttachScreen(ModalScreen[str | None]):
    """Dismisses with the path typed or picked, or None on Esc."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, folder: Path | None = None):
        super().__init__()
        self.folder = folder or Path.cwd()

    def compose(self):
        with Vertical(classes="dialog", id="attach-dialog"):
            yield Label("Attach a file", classes="dialog-title")
            yield PathInput(placeholder="Path of a file (Tab completes)", id="attach-path")
            yield FileTree(self.folder, id="attach-tree")
            yield Label("Enter attaches · Tab moves to the tree · Esc cancels", classes="dialog-hint")

    @on(Input.Submitted, "#attach-path")
    def typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())

    @on(DirectoryTree.FileSelected)
    def picked(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))
