"""Where to write the session as Markdown."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from assistant.tui.screens.attach import PathInput


class ExportScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, default_path: str):
        super().__init__()
        self.default_path = default_path

    def compose(self):
        with Vertical(classes="dialog", id="export-dialog"):
            yield Label("Export the session to Markdown", classes="dialog-title")
            yield PathInput(self.default_path, id="export-path")
            yield Label("Enter writes the file · Esc cancels", classes="dialog-hint")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())
