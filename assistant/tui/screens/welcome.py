"""Shown when there is no model at all: how to get one."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Markdown

from models.paths import models_dir

NO_MODEL_TEXT = """\
xgen-local runs Salesforce XGen-7B on this machine, offline. There is no model in
`{folder}` yet. In another terminal, run one of:

- `xgen pull xgen-7b-8k-inst`: download and convert XGen-7B
  (about 27 GB to download once, a 4.2 GB file to keep);
- `xgen demo`: build a tiny demo model in seconds, with no download
  (its weights are random, so its replies are nonsense, but every feature works).

Then press **r** to load it. Your saved sessions can be read meanwhile (**Esc**).
"""


class NoModelScreen(ModalScreen[str]):
    """Dismisses with "retry", "browse" or "quit"."""

    BINDINGS = [Binding("r", "choose('retry')", "Retry"), Binding("escape", "choose('browse')", "Browse sessions"),
                Binding("q", "choose('quit')", "Quit")]

    def compose(self):
        with Vertical(classes="dialog", id="welcome-dialog"):
            yield Label("No model yet", classes="dialog-title")
            yield Markdown(NO_MODEL_TEXT.format(folder=models_dir()), id="welcome-text", open_links=False)
            with Horizontal(id="welcome-buttons"):
                yield Button("Retry (r)", id="retry", variant="primary", compact=True)
                yield Button("Browse sessions (Esc)", id="browse", compact=True)
                yield Button("Quit (q)", id="quit", compact=True)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "browse")
