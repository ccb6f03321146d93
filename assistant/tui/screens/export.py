"""Write the open session as Markdown: where (a default in xgen's data folder), then the file.

The file is written as `xgen sessions export -o` writes it (models/atomic.write_text):
through a symbolic link to its target, never onto a device or a FIFO, under a temporary
name renamed when complete. An existing file is replaced only once the user says so."""

from __future__ import annotations

import re
from pathlib import Path

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from assistant.session import absolute
from assistant.store import Session, Store
from assistant.tui.screens.attach import PathInput
from assistant.tui.screens.dialogs import ConfirmScreen
from assistant.tui.text import shown
from models.atomic import output_target, write_text
from models.errors import XGenError
from models.paths import data_dir


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "session"


class ExportScreen(ModalScreen[Path | None]):
    """Dismisses with the file written, or None on Esc. A path that cannot be written
    keeps the dialog open and says why, as a wrong path does when attaching."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, store: Store, session: Session):
        super().__init__()
        self.store = store
        self.session = session
        self.default_path = str(data_dir() / "exports" / f"{slug(session.title)}-{session.short_id}.md")

    def compose(self):
        with Vertical(classes="dialog", id="export-dialog"):
            yield Label("Export the session to Markdown", classes="dialog-title")
            yield PathInput(self.default_path, id="export-path")
            yield Label("", id="export-error")
            yield Label("Enter writes the file · Esc cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#export-error").display = False

    def show_error(self, message: str) -> None:
        error = self.query_one("#export-error", Label)
        error.update(shown(message))
        error.display = bool(message)

    @on(Input.Changed)
    def typing(self) -> None:
        self.show_error("")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            return
        target = absolute(event.value.strip())
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            existing = output_target(target, force=True)  # refuses a folder, a device, a FIFO
        except OSError as exc:
            self.show_error(f"Cannot write {target}: {exc.strerror or exc}")
            return
        except XGenError as exc:
            self.show_error(str(exc))
            return
        if not existing.exists():
            self.write(target, force=False)
            return
        name = target.name + (f" (a link to {existing})" if existing != target else "")
        self.app.push_screen(ConfirmScreen(f"Replace {target.name}?",
                                           f"{name} exists; exporting replaces what it holds.", action="Replace"),
                             callback=lambda replace: self.write(target, force=True) if replace else None)

    def write(self, target: Path, *, force: bool) -> None:
        try:
            write_text(target, self.store.export_markdown(self.session.id), force=force, private=True)
        except XGenError as exc:
            self.show_error(str(exc))
            self.query_one("#export-path").focus()
            return
        self.app.notify(str(target), title="Exported")
        self.dismiss(target)
