"""Write the open session as Markdown: where (a default in xgen's data folder), then the file."""

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
from models.errors import XGenError
from models.paths import data_dir


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "session"


class ExportScreen(ModalScreen[Path | None]):
    """Dismisses with the file written, or None (Esc, or it could not be written: a toast says why)."""

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
            yield Label("Enter writes the file · Esc cancels", classes="dialog-hint")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(self.write(event.value.strip()))

    def write(self, path: str) -> Path | None:
        target = absolute(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.store.export_markdown(self.session.id), encoding="utf-8")
        except OSError as exc:
            self.app.notify(f"Cannot write {target}: {exc.strerror or exc}. Choose another path (Ctrl+T).",
                            title="Export failed", severity="error", timeout=10)
            return None
        except XGenError as exc:
            self.app.notify(str(exc), title="Export failed", severity="error", timeout=10)
            return None
        self.app.notify(str(target), title="Exported")
        return target
