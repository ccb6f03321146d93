"""Small dialogs: confirm an action that cannot be undone, and type a line of text."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label
from assistant.tui.text import shown


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True for the action (Enter on it, or y), False on Esc, n or Cancel.
    The focus starts on Cancel, so a stray Enter deletes nothing."""

    BINDINGS = [Binding("escape,n", "dismiss(False)", "Cancel"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, title: str, message: str, action: str = "Delete"):
        super().__init__()
        self.title_text = title
        self.message = message
        self.action = action

    def compose(self):
        with Vertical(classes="dialog", id="confirm-dialog"):
            yield Label(shown(self.title_text), classes="dialog-title")
            yield Label(shown(self.message), id="confirm-message")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.action} (y)", id="confirm-yes", variant="error", compact=True)
                yield Button("Cancel (Esc)", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-no").focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class TextScreen(ModalScreen[str | None]):
    """One line of text (a session's title): dismisses with it, or None on Esc."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, value: str = "", hint: str = "Enter saves · Esc cancels"):
        super().__init__()
        self.title_text = title
        self.value = value
        self.hint = hint

    def compose(self):
        with Vertical(classes="dialog", id="text-dialog"):
            yield Label(shown(self.title_text), classes="dialog-title")
            yield Input(self.value, id="text-value", select_on_focus=False)
            yield Label(shown(self.hint), classes="dialog-hint")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())
