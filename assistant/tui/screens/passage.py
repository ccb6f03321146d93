"""A cited passage, opened from a reply's sources."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from assistant.tui.widgets.messages import citation_title
from assistant.tui.text import shown


class PassageScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close"), Binding("c", "copy", "Copy passage")]

    def __init__(self, citation: dict[str, Any]):
        super().__init__()
        self.citation = citation

    def compose(self):
        text = str(self.citation.get("text") or "").strip()
        with Vertical(id="passage-dialog", classes="dialog"):
            yield Label(shown(citation_title(self.citation)), classes="dialog-title")
            with VerticalScroll(id="passage-scroll"):
                yield Static(shown(text or "(the passage text was not saved)"), id="passage-text")
            yield Footer()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(str(self.citation.get("text") or ""))
        self.notify("Copied the passage")
