"""Shown when there is no model at all: how to get one, and the demo built on the spot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Markdown, Static

from assistant.tui.text import shown
from models.errors import XGenError
from models.paths import models_dir

NO_MODEL_TEXT = """\
xgen-local runs Salesforce XGen-7B on this machine, offline. There is no model in
`{folder}` yet. Either:

- **Build the demo now** (**d**): a tiny model made here in seconds, with no download
  (its weights are random, so its replies are nonsense, but every feature works);
- or run `xgen pull xgen-7b-8k-inst` in another terminal to download and convert XGen-7B
  (about 27 GB to download once, a 4.2 GB file to keep), then press **r** to load it.

Your saved sessions can be read meanwhile (**Esc**).
"""

BuildDemo = Callable[[Callable[[str], None]], Path]  # the core's build, given where to report each step


class NoModelScreen(ModalScreen[str]):
    """Dismisses with "retry", "browse", "quit", or "load:PATH" once the demo is built."""

    BINDINGS = [Binding("r", "choose('retry')", "Retry"), Binding("d", "build_demo", "Build the demo"),
                Binding("escape", "choose('browse')", "Browse sessions"), Binding("q", "choose('quit')", "Quit")]

    def __init__(self, build_demo: BuildDemo):
        super().__init__()
        self.build = build_demo
        self.building = False

    def compose(self):
        with Vertical(classes="dialog", id="welcome-dialog"):
            yield Label("No model yet", classes="dialog-title")
            yield Markdown(NO_MODEL_TEXT.format(folder=models_dir()), id="welcome-text", open_links=False)
            yield Static("", id="welcome-progress")
            with Horizontal(id="welcome-buttons"):
                yield Button("Build demo (d)", id="demo", variant="primary", compact=True)
                yield Button("Retry (r)", id="retry", compact=True)
                yield Button("Sessions (Esc)", id="browse", compact=True)
                yield Button("Quit (q)", id="quit", compact=True)

    def action_choose(self, choice: str) -> None:
        if not self.building:
            self.dismiss(choice)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "demo":
            self.action_build_demo()
        else:
            self.action_choose(event.button.id or "browse")

    def action_build_demo(self) -> None:
        if self.building:
            return
        self.building = True
        self.query_one("#welcome-buttons").disabled = True
        self._show_step("Building the demo model…")
        self._build_worker()

    def _show_step(self, line: str) -> None:
        progress = self.query_one("#welcome-progress", Static)
        progress.display = True
        progress.update(shown(line))

    @work(thread=True, exclusive=True, group="demo")
    def _build_worker(self) -> None:
        # The same code as `xgen demo`; each step it reports shows here as it goes.
        try:
            path = self.build(lambda line: self.app.call_from_thread(self._show_step, line))
        except (XGenError, OSError, RuntimeError, ValueError) as exc:
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, XGenError) else str(exc))
            return
        self.app.call_from_thread(self.dismiss, f"load:{path}")

    def _failed(self, error: str) -> None:
        self.building = False
        self.query_one("#welcome-buttons").disabled = False
        self._show_step(f"The demo could not be built: {error}")
