"""The main screen: sessions and files on the left, the conversation, the input, the status bar."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
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
from assistant.tui.widgets.messages import CitationButton, ReplyMessage, SummaryMessage, UserMessage
from assistant.tui.widgets.sidebar import Sidebar
from assistant.tui.widgets import status as status_clock
from assistant.tui.widgets.status import StatusBar
from models.errors import XGenError
from models.paths import data_dir

if TYPE_CHECKING:
    from assistant.tui.app import XGenApp


@dataclass
class LiveRun:
    """What the status bar shows of the reply or summary running now."""

    started: float
    summary: bool = False
    generated: int = 0
    first: tuple[float, int] | None = None  # (time, tokens) of the first streamed text
    last: tuple[float, int] | None = None  # ... and of the latest
    context: int = 0  # a summary's current call: tokens read + written, when reported


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "session"


class ChatScreen(SessionsAndFiles, Screen):
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        # Like the command line: Ctrl+C stops a reply. Idle, check_action() turns this
        # binding off so Ctrl+C keeps Textual's meaning (copy in the input).
        Binding("ctrl+c", "stop", "Stop", show=False, priority=True),
        Binding("ctrl+n", "new_session", "New"),
        Binding("ctrl+o", "attach", "Attach"),
        Binding("ctrl+s", "summarize", "Summarize"),
        # Not Ctrl+E / Ctrl+Y: the input uses them (end of line, redo).
        Binding("ctrl+t", "export", "Export"),
        Binding("ctrl+g", "copy_answer", "Copy", show=False),  # in the palette; the footer is full at 80 columns
        Binding("f2", "toggle_sidebar", "Sidebar"),  # not Ctrl+B: tmux's prefix
    ]
    # The sidebar is hidden below 90 columns (F2 shows it) and narrower below 120.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-medium"), (120, "-wide")]

    busy: reactive[str] = reactive("")  # "", "reply" or "summary"

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()
        self._reading_files = False
        self._pending: str | None = None
        self._live: LiveRun | None = None
        self._live_timer = None

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
        yield Footer(compact=True)

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
            self._stop_live()

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
        self._start_live(kind)
        return self._stop

    # -- the live status bar ---------------------------------------------------------------

    def _start_live(self, kind: str) -> None:
        self._live = LiveRun(status_clock.now(), summary=kind == "summary")
        self.status.elapsed = 0.0
        if self._live_timer is None:
            self._live_timer = self.set_interval(1.0, self._tick_live)
        else:
            self._live_timer.resume()

    def _stop_live(self) -> None:
        self._tick_live()  # the final elapsed time stays until the next run or session
        self._live = None
        if self._live_timer is not None:
            self._live_timer.pause()

    def _count_live(self, generated: int, context: int = 0) -> None:
        live = self._live
        if live is None:
            return
        now = status_clock.now()
        if generated:
            live.generated = generated
            live.last = (now, generated)
            if live.first is None:
                live.first = live.last
        if context:
            live.context = context
        self._tick_live()

    def _tick_live(self) -> None:
        """Elapsed time, tokens/s and context used, from the counts streamed so far."""
        live = self._live
        if live is None:
            return
        status = self.status
        status.elapsed = status_clock.now() - live.started
        if live.first and live.last and live.last[0] - live.first[0] >= 0.5:
            status.speed = (live.last[1] - live.first[1]) / (live.last[0] - live.first[0])
        if live.summary:
            if live.context:
                status.context_used = live.context
        else:  # the prompt of this turn is in the conversation's count once the worker built it
            status.context_used = self.xgen.conversation.context_used + live.generated

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
            event.composer.remember(event.text)

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
            composer.remember(pending)

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
        self._count_live(event.generated)
        widget = self.view.reply(event.message_id)
        if widget is not None:
            await widget.append(event.text)
        if isinstance(widget, SummaryMessage):
            widget.set_written(event.generated)

    def on_reply_message_citation_opened(self, event: ReplyMessage.CitationOpened) -> None:
        self.app.push_screen(PassageScreen(event.citation))

    def on_summary_progress(self, event: SummaryProgress) -> None:
        widget = self.view.reply(event.message_id)
        if isinstance(widget, SummaryMessage):
            widget.set_progress(event.stage, event.done, event.total)
        if event.stage == "prompt":
            self._count_live(0, event.done)  # the context that call holds so far

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
        # Classes, not sidebar.display, so the width breakpoints keep working after F2.
        shown = self.query_one(Sidebar).display
        self.set_class(shown, "-hide-sidebar")
        self.set_class(not shown, "-show-sidebar")

    def action_chat_page(self, direction: int) -> None:
        """PageUp/PageDown from the input scroll the conversation."""
        view = self.view
        if direction < 0:
            view.scroll_page_up()
        else:
            view.scroll_page_down()

    @property
    def composer(self) -> Composer:
        return self.query_one(Composer)

    def on_screen_resume(self) -> None:
        # Back from a dialog or the command palette: to the input, whose draft is kept.
        # A citation keeps the focus, so the next source is one Tab away.
        if not isinstance(self.focused, CitationButton):
            self.composer.focus()
