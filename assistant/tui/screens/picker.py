"""Choose one of a few things: a session, a model, a file."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option
from assistant.tui.text import shown


class PickerScreen(ModalScreen[str | None]):
    """Dismisses with the chosen option's id, or None on Esc."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, options: list[tuple[str, str]], *, hint: str = "", highlighted: str | None = None):
        super().__init__()
        self.title_text = title
        self.options = options
        self.hint = hint
        self.initial = highlighted

    def compose(self):
        with Vertical(classes="dialog", id="picker-dialog"):
            yield Label(shown(self.title_text), classes="dialog-title")
            yield OptionList(*[Option(shown(label), id=key) for key, label in self.options], id="picker")
            yield Label(shown(self.hint or "Enter chooses · Esc cancels"), classes="dialog-hint")

    def on_mount(self) -> None:
        picker = self.query_one(OptionList)
        ids = [key for key, _ in self.options]
        if self.initial in ids:
            picker.highlighted = ids.index(self.initial)

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
