"""The main screen: sessions and files on the left, the conversation, the input, the status bar."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, OptionList

from assistant.summarize import SummaryForm
from assistant.tui import tasks
from assistant.session import absolute
from assistant.tui.events import ReplyDone, ReplyText, SummaryProgress, TurnFailed, TurnStarted
from assistant.tui.screens.chat_sessions import SessionsAndFiles
from assistant.tui.screens.export import ExportScreen
from assistant.tui.screens.passage import PassageScreen
from assistant.tui.screens.picker import PickerScreen
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.conversation import ConversationView
from assistant.tui.widgets.messages import ReplyMessage, SummaryMessage, UserMessage
from assistant.tui.widgets.sidebar import Sidebar
from assistant.tui.widgets.status import StatusBar
from models.errors import XGenError
from models.paths import data_dir

if TYPE_CHECKING:
    from assistant.tui.app import XGenApp


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "session"


class ChatScreen(SessionsAndFiles, Screen):
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_session", "New"),
        Binding("ctrl+o", "attach", "Attach"),
        Binding("ctrl+s", "summarize", "Summarize"),
        # Not Ctrl+E / Ctrl+Y: the input uses them (end of line, redo).
        Binding("ctrl+t", "export", "Export"),
        Binding("ctrl+g", "copy_answer", "Copy"),
        Binding("f2", "toggle_sidebar", "Sidebar", show=False),  # not Ctrl+B: tmux's prefix
    ]

    busy: reactive[str] = reactive("")  # "", "reply" or "summary"

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()
        self._reading_files = False
        self._pending: str | None = None

    @property
    def xgen(self) -> "XGenApp":
        return self.app  # type: ignore[return-value]

    def compose(self):
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar")
            with Vertical(id="chat"):
                yield ConversationView(id="conversation")
                yield Composer(id="composer")
        yield StatusBar(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(Composer).focus()
        await self.xgen.screen_ready()

    @property
    def view(self) -> ConversationView:
        return self.query_one(ConversationView)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "stop":
            return bool(self.busy)
        return True

    def watch_busy(self, busy: str) -> None:
        self.refresh_bindings()
        if not busy:
            self.status.activity = ""

    def on_unmount(self) -> None:
        self._stop.set()  # let a running worker return, so the app can exit

    # -- asking --------------------------------------------------------------------------

    def _ready(self) -> bool:
        if self._refuse_while_busy():
            return False
        if self.xgen.loaded is None:
            if self.xgen.model_loading:
                self.notify("The model is still loading; try again in a moment.", severity="warning")
            else:
                self.notify("No model is loaded. Ctrl+P → Switch model, or run `xgen demo` in another terminal.",
                            title="No model", severity="error")
            return False
        if self._reading_files:
            self.notify("Still reading the files; try again in a moment.", severity="warning")
            return False
        return True

    def _begin(self, kind: str, activity: str) -> threading.Event:
        self._stop = threading.Event()
        self.busy = kind
        self.status.activity = activity
        return self._stop

    @on(Composer.Submitted)
    async def send(self, event: Composer.Submitted) -> None:
        waiting = self.xgen.loaded is None and self.xgen.model_loading or self._reading_files
        if waiting and not self.busy:
            # Sent by send_pending() once the model and the files are ready.
            self._pending = event.text
            self.status.activity = "will send when ready…"
            return
        if self._ready() and await self.ask(event.text):
            event.composer.clear()

    def pending_dropped(self) -> None:
        if self._pending:
            self._pending = None
            self.status.activity = ""

    async def send_pending(self) -> None:
        """Send the message typed while the model or the files were loading (if still there)."""
        composer = self.query_one(Composer)
        if not self._pending or self._reading_files or self.xgen.model_loading:
            return
        pending, self._pending = self._pending, None
        if not self.busy:
            self.status.activity = ""
        if composer.text.strip() == pending and self._ready() and await self.ask(pending):
            composer.clear()

    async def ask(self, question: str) -> bool:
        """Hand the question to the core in a worker; the messages appear once it has saved them."""
        model = self.xgen.loaded
        assert model is not None
        stop = self._begin("reply", "writing…")
        self.ask_worker(model, question, stop)
        return True

    @work(thread=True, exclusive=True, group="inference")
    def ask_worker(self, model, question: str, stop: threading.Event) -> None:
        with self.xgen.engine_lock:
            tasks.run_ask(self.xgen.conversation, model, question, stop, self.post_message)

    async def on_turn_started(self, event: TurnStarted) -> None:
        if event.question is not None:
            await self.view.add(UserMessage(event.question.content, event.question.id),
                                ReplyMessage(event.reply.id, streaming=True))
        else:
            await self.view.add(SummaryMessage(event.reply.id, meta=event.reply.meta, streaming=True))
        self.refresh_sidebar()

    def on_turn_failed(self, event: TurnFailed) -> None:
        self.busy = ""
        composer = self.query_one(Composer)
        if event.question and not composer.text.strip():
            composer.text = event.question  # nothing was sent: give the question back to edit
        self.notify(event.error, title="Not sent" if event.question is not None else "The summary did not start",
                    severity="error", timeout=12)

    async def on_reply_text(self, event: ReplyText) -> None:
        widget = self.view.reply(event.message_id)
        if widget is not None:
            await widget.append(event.text)

    def on_reply_message_citation_opened(self, event: ReplyMessage.CitationOpened) -> None:
        self.app.push_screen(PassageScreen(event.citation))

    def on_summary_progress(self, event: SummaryProgress) -> None:
        widget = self.view.reply(event.message_id)
        if isinstance(widget, SummaryMessage):
            widget.set_progress(event.stage, event.done, event.total)

    async def on_reply_done(self, event: ReplyDone) -> None:
        widget = self.view.reply(event.message_id)
        if widget is not None:
            await widget.finish(event.text, event.meta)
        self.busy = ""
        self.status.context_used = event.context_used
        speed = (event.meta.get("stats") or {}).get("tokens_per_second")
        if speed:
            self.status.speed = speed
        if event.error:
            self.notify(event.error, title="No reply" if widget is None or widget.role != "summary"
                        else "The summary failed", severity="error", timeout=10)
        if event.save_error:
            self.notify(f"{event.save_error}. The text is on screen: copy it (Ctrl+G) or export (Ctrl+T).",
                        title="Could not save", severity="error", timeout=15)
        if event.meta.get("finish") == "context" and not event.error:
            self.notify("The context is full. Start a new session (Ctrl+N) or clear this one (Ctrl+P → Clear).",
                        severity="warning", timeout=10)
        self.refresh_sidebar()

    def action_stop(self) -> None:
        if self.busy:
            self._stop.set()
            self.status.activity = "stopping…"

    # -- summaries -----------------------------------------------------------------------

    async def action_summarize(self, form: str = "paragraph") -> None:
        docs = self.xgen.conversation.documents
        if not docs:
            self.notify("Attach a file first (Ctrl+O)." if not self._reading_files else
                        "Still reading the files; try again in a moment.", severity="warning")
            return
        files = self.query_one("#files", OptionList)
        chosen = self.query_one(Sidebar).highlighted_file if files.has_focus else None
        if chosen is None and len(docs) == 1:
            chosen = docs[0].source
        if chosen is None:
            options = [(d.source, d.name) for d in docs]
            self.app.push_screen(PickerScreen("Summarize which file?", options),
                                 callback=lambda path: self._summarize_chosen(path, form))
            return
        await self.summarize(chosen, form)

    async def _summarize_chosen(self, path: str | None, form: str) -> None:
        if path:
            await self.summarize(path, form)

    @on(Sidebar.FileChosen)
    async def file_chosen(self, event: Sidebar.FileChosen) -> None:
        await self.summarize(event.path)

    async def summarize(self, path: str, form: str = "paragraph") -> None:
        app = self.xgen
        doc = app.conversation.document(path)
        if doc is None:
            self.notify(f"{Path(path).name} could not be read; attach it again (Ctrl+O).", severity="error")
            return
        if not self._ready():
            return
        model = app.loaded
        assert model is not None
        stop = self._begin("summary", f"summarizing {doc.name}…")
        self.summary_worker(model, doc, SummaryForm(form), stop)

    @work(thread=True, exclusive=True, group="inference")
    def summary_worker(self, model, doc, form: SummaryForm, stop: threading.Event) -> None:
        with self.xgen.engine_lock:
            tasks.run_summary(self.xgen.conversation, model, doc, form, stop, self.post_message)

    # -- export, copy, layout ------------------------------------------------------------

    def action_export(self) -> None:
        session = self.xgen.conversation.session
        if session is None:
            self.notify("Nothing to export yet: this session is empty.", severity="warning")
            return
        default = data_dir() / "exports" / f"{slug(session.title)}-{session.short_id}.md"
        self.app.push_screen(ExportScreen(str(default)), callback=self.export_to)

    def export_to(self, path: str | None) -> Path | None:
        session = self.xgen.conversation.session
        if not path or session is None:
            return None
        target = absolute(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.xgen.store.export_markdown(session.id), encoding="utf-8")
        except OSError as exc:
            self.notify(f"Cannot write {target}: {exc.strerror or exc}. Choose another path (Ctrl+T).",
                        title="Export failed", severity="error", timeout=10)
            return None
        except XGenError as exc:
            self.notify(str(exc), title="Export failed", severity="error", timeout=10)
            return None
        self.notify(str(target), title="Exported")
        return target

    def action_copy_answer(self) -> None:
        reply = self.view.last_reply()
        if reply is None:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(reply.text)
        self.notify(f"{len(reply.text):,} characters (through your terminal, OSC 52)", title="Copied the last answer")

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(Sidebar)
        sidebar.display = not sidebar.display
