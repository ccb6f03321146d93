"""The main screen: sessions and files on the left, the conversation, the input, the status bar.

The screen composes its parts and routes between them; each part owns its behaviour:
`Sessions` (open, new, clear, rename, delete), `FileReader` (attach, re-read, detach),
`JobRunner` (asks and summaries in a worker), the `ConversationView` and its message
widgets, the `Composer`, the `Sidebar`, and the `StatusBar`, which is bound to this
screen's reactive state. What the screen needs from the app is `Host` (tui/host.py)."""

from __future__ import annotations

from pathlib import Path

from textual import events, on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, TextArea

from assistant.session import SummaryForm
from assistant.tui.events import Indexing, ReplyDone, ReplyText, SummaryProgress, TurnFailed, TurnStarted
from assistant.tui.host import Host, ModelState
from assistant.tui.screens.attach import AttachScreen
from assistant.tui.screens.folder import FolderScreen
from assistant.tui.screens.export import ExportScreen
from assistant.tui.screens.passage import PassageScreen
from assistant.tui.screens.picker import PickerScreen
from assistant.tui.widgets.attached import AttachedLine
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.conversation import ConversationView
from assistant.tui.flows.files import FileReader
from assistant.tui.flows.jobs import JobRunner
from assistant.tui.widgets.messages import ReplyMessage, SummaryMessage, UserMessage, citation_title
from assistant.tui.flows.sessions import Sessions, listed_sessions
from assistant.tui.widgets.sidebar import FileRow, Sidebar
from assistant.tui.widgets.status import StatusBar


class ChatScreen(Screen):
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

    # The state the status bar is bound to.
    busy: reactive[str] = reactive("")  # "", "reply" or "summary"
    model: reactive[ModelState] = reactive(ModelState())  # the app's, followed
    activity = reactive("")
    context_used = reactive(0)
    session_shown = reactive(0)

    def __init__(self, host: Host, *, files: list[str] | None = None, session_id: str | None = None):
        super().__init__()
        self.host = host
        self.initial_files = list(files or [])
        self.initial_session = session_id
        self._pending: str | None = None  # typed while the model or the files were loading

    def compose(self):
        yield Sessions(self.host, self._refuse_while_busy, lambda: bool(self.busy))
        yield FileReader(self.host)
        yield JobRunner(self.host)
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar")
            with Vertical(id="chat"):
                yield ConversationView(id="conversation")
                yield AttachedLine(id="attached")
                yield Composer(id="composer")
        yield StatusBar(id="status").data_bind(ChatScreen.model, ChatScreen.activity, ChatScreen.context_used,
                                               ChatScreen.session_shown, running=ChatScreen.busy)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.composer.focus()
        self.watch(self.host, "model_state", self._model_changed)  # type: ignore[arg-type]
        if self.query_one(Sessions).start(self.initial_files, self.initial_session):
            self.files.attach(self.initial_files)
            self._reading_activity()

    # -- the parts -------------------------------------------------------------------------

    @property
    def view(self) -> ConversationView:
        return self.query_one(ConversationView)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def composer(self) -> Composer:
        return self.query_one(Composer)

    @property
    def files(self) -> FileReader:
        return self.query_one(FileReader)

    @property
    def sessions(self) -> Sessions:
        return self.query_one(Sessions)

    @property
    def jobs(self) -> JobRunner:
        return self.query_one(JobRunner)

    def refresh_sidebar(self) -> None:
        found = self.query(Sidebar)
        if not found:
            return  # the app is closing
        conversation = self.host.conversation
        conversation.refresh()
        sidebar = found.first()
        sidebar.show_sessions(listed_sessions(self.host.store), conversation.session_id)
        folders = {a.source: a.n_files for a in conversation.documents if a.kind == "folder"}
        rows = ([FileRow.attached(f, folders.get(f.path)) for f in conversation.files()]
                + [FileRow.summary_only(f.source, f.name, f.size) for f in conversation.large_files])
        sidebar.show_files(rows)
        self.query_one(AttachedLine).show([row.name for row in rows])
        self.composer.about_files(bool(rows))

    # -- state -----------------------------------------------------------------------------

    def _model_changed(self, state: ModelState) -> None:
        self.model = state
        if state.loading:
            return
        self.context_used = 0  # a new model starts with an empty context
        if self.host.loaded is not None:
            self.send_pending()
        elif self._pending:  # the load failed: the text stays in the input
            self._pending = None
            self.activity = ""

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "stop":
            return bool(self.busy) or self.files.reading
        return True

    def watch_busy(self, busy: str) -> None:
        self.refresh_bindings()
        if not busy:
            self.activity = ""
            self._reading_activity()  # files attached mid-reply may still be read

    def _reading_activity(self) -> None:
        self.refresh_bindings()  # Esc stops the indexing while files are read
        if self.files.reading and not self.busy:
            self.activity = "reading files…"

    def _refuse_while_busy(self) -> bool:
        if self.busy:
            self.notify("XGen is still writing. Esc stops it.", severity="warning")
        return bool(self.busy)

    def _ready(self) -> bool:
        if self._refuse_while_busy():
            return False
        if self.host.loaded is None:
            if self.host.model_loading:
                self.notify("The model is still loading; try again in a moment.", severity="warning")
            else:
                self.notify("No model is loaded. Ctrl+P → Switch model, or run `xgen demo` in another terminal.",
                            title="No model", severity="error")
            return False
        if self.files.reading:
            self.notify("Still reading the files; try again in a moment.", severity="warning")
            return False
        return True

    # -- sessions and files ----------------------------------------------------------------

    async def on_sessions_shown(self, event: Sessions.Shown) -> None:
        await self.view.show(event.messages)
        self.composer.set_history([m.content for m in event.messages if m.role == "user"])
        self.refresh_sidebar()
        self.context_used = 0
        self.session_shown += 1
        if event.has_files:
            self.files.reread()
            self._reading_activity()
        if event.note:
            self.notify(event.note)

    def on_sessions_changed(self) -> None:
        self.refresh_sidebar()

    def on_file_reader_files_changed(self) -> None:
        self.refresh_bindings()
        if not self.files.reading and not self.busy:
            self.activity = ""
        if not self.busy:  # a reply or summary running sets it when it is done
            self.context_used = self.host.conversation.context_used
        self.refresh_sidebar()
        self.send_pending()

    @on(Sidebar.SessionChosen)
    def session_chosen(self, event: Sidebar.SessionChosen) -> None:
        if event.session_id != self.host.conversation.session_id:
            self.sessions.open(event.session_id)

    def attach_paths(self, paths: list[str]) -> None:
        if self.files.attach(paths):
            self._reading_activity()

    def action_attach(self) -> None:
        self.app.push_screen(AttachScreen(), callback=lambda path: self.attach_paths([path]) if path else None)

    def action_detach_file(self) -> None:
        if not self._refuse_while_busy():
            self.files.detach()

    def action_new_session(self) -> None:
        self.sessions.new()
        self.composer.focus()

    def action_switch_session(self) -> None:
        self.sessions.switch()

    def action_rename_session(self) -> None:
        self.sessions.rename()

    def action_delete_session(self) -> None:
        self.sessions.delete()

    def action_clear(self) -> None:
        self.sessions.clear()

    # -- asking ------------------------------------------------------------------------------

    @on(Composer.Submitted)
    def send(self, event: Composer.Submitted) -> None:
        waiting = self.host.loaded is None and self.host.model_loading or self.files.reading
        if waiting and not self.busy:
            # Sent by send_pending() once the model and the files are ready.
            self._pending = event.text
            self.activity = "will send when ready…"
            return
        if self._ready():
            self._ask(event.text)

    def send_pending(self) -> None:
        """Send the message typed while the model or the files were loading (if still there)."""
        if not self._pending or self.files.reading or self.host.model_loading:
            return
        pending, self._pending = self._pending, None
        if not self.busy:
            self.activity = ""
        if self.composer.text.strip() == pending and self._ready():
            self._ask(pending)

    def _ask(self, question: str) -> None:
        assert self.host.loaded is not None
        self.busy = "reply"
        self.activity = "writing…"
        self.jobs.ask(self.host.loaded, question)
        self.composer.clear()
        self.composer.remember(question)

    def action_stop(self) -> None:
        if self.busy:
            self.jobs.stop()
            self.activity = "stopping…"
        elif self.files.reading:
            self.files.stop_reading()
            self.activity = "stopping the indexing…"

    def on_indexing(self, event: Indexing) -> None:
        for sidebar in self.query(Sidebar):
            sidebar.show_indexing(event.done, event.total)

    def stop(self) -> None:
        """Stop whatever runs (the app is closing; the runner may be gone already)."""
        for runner in self.query(JobRunner):
            runner.stop()

    # -- a job's messages ----------------------------------------------------------------------

    async def on_turn_started(self, event: TurnStarted) -> None:
        self.context_used = self.host.conversation.context_used  # with this turn's prompt
        if event.question is not None:
            await self.view.add(UserMessage(event.question.content, event.question.id),
                                ReplyMessage(event.reply.id, streaming=True))
        else:
            await self.view.add(SummaryMessage(event.reply.id, meta=event.reply.meta, streaming=True))
        self.refresh_sidebar()

    async def on_turn_failed(self, event: TurnFailed) -> None:
        self.busy = ""
        await self.view.take_back(event.shown)
        self.refresh_sidebar()
        if event.question and not self.composer.text.strip():
            self.composer.text = event.question  # nothing was sent: give the question back to edit
        self.notify(event.error, title="Not sent" if event.question is not None else "The summary did not start",
                    severity="error", timeout=12)

    async def on_reply_text(self, event: ReplyText) -> None:
        self.status.count(event.generated)
        widget = self.view.reply(event.message_id)
        if widget is not None:
            await widget.append(event.text)
        if isinstance(widget, SummaryMessage):
            widget.set_written(event.generated)

    def on_reply_message_citation_opened(self, event: ReplyMessage.CitationOpened) -> None:
        self.app.push_screen(PassageScreen(event.citation))

    def on_reply_message_given_opened(self, event: ReplyMessage.GivenOpened) -> None:
        passages = {str(i): p for i, p in enumerate(event.passages)}
        self.app.push_screen(PickerScreen("Passages given but not cited", [(i, citation_title(p))
                                                                            for i, p in passages.items()],
                                          hint="Enter opens the passage · Esc cancels"),
                             callback=lambda i: self.app.push_screen(PassageScreen(passages[i])) if i else None)

    def on_summary_progress(self, event: SummaryProgress) -> None:
        if event.stage == "speed":  # a call of the summary is done: its writing rate
            self.status.measured(event.done / event.total * 1000 if event.total else 0.0)
            return
        if event.stage == "call":  # a call of the summary starts: its prompt fills the context
            self.status.count(context=event.done)
            return
        widget = self.view.reply(event.message_id)
        if isinstance(widget, SummaryMessage):
            widget.set_progress(event.stage, event.done, event.total)

    async def on_reply_done(self, event: ReplyDone) -> None:
        widget = self.view.reply(event.message_id)
        if widget is not None:
            await widget.finish(event.text, event.meta)
        self.busy = ""
        self.context_used = event.context_used
        self.status.measured((event.meta.get("stats") or {}).get("tokens_per_second") or 0.0)
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

    # -- summaries ---------------------------------------------------------------------------

    def action_summarize(self, form: str = "paragraph") -> None:
        conversation = self.host.conversation
        docs = [*conversation.summary_sources, *(a for a in conversation.documents if a.kind == "folder")]
        if not docs:
            self.notify("Attach a file first (Ctrl+O)." if not self.files.reading else
                        "Still reading the files; try again in a moment.", severity="warning")
            return
        chosen = self.query_one(Sidebar).highlighted_file if self.query_one("#files", OptionList).has_focus else None
        if chosen is None and len(docs) == 1:
            chosen = docs[0].source
        if chosen is None:
            self.app.push_screen(PickerScreen("Summarize which file?", [(d.source, d.name + "/" * (getattr(d, "kind", "") == "folder"))
                                                                        for d in docs]),
                                 callback=lambda path: self.summarize(path, form) if path else None)
            return
        self.summarize(chosen, form)

    @on(Sidebar.FileChosen)
    def file_chosen(self, event: Sidebar.FileChosen) -> None:
        self.summarize(event.path)

    def summarize(self, path: str, form: str = "paragraph") -> None:
        folder = next((a for a in self.host.conversation.documents if a.kind == "folder" and a.source == path), None)
        if folder is not None:  # which of its files?
            self.app.push_screen(FolderScreen(folder.name, self.host.conversation.folder_files(path)),
                                 callback=lambda chosen: self.summarize(chosen, form) if chosen else None)
            return
        doc = self.host.conversation.document(path)
        if doc is None:
            self.notify(f"{Path(path).name} could not be read; attach it again (Ctrl+O).", severity="error")
            return
        if not self._ready():
            return
        assert self.host.loaded is not None
        self.busy = "summary"
        self.activity = f"summarizing {doc.name}…"
        self.jobs.summarize(self.host.loaded, doc, SummaryForm(form))

    # -- export, copy, layout ------------------------------------------------------------------

    def action_export(self) -> None:
        session = self.host.conversation.session
        if session is None:
            self.notify("Nothing to export yet: this session is empty.", severity="warning")
            return
        self.app.push_screen(ExportScreen(self.host.store, session))

    def action_copy_answer(self) -> None:
        reply = self.view.last_reply()
        if reply is None:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(reply.text)
        self.notify(f"{len(reply.text):,} characters (through your terminal, OSC 52)", title="Copied the last answer")

    def action_toggle_sidebar(self) -> None:
        # Classes, not sidebar.display, so the width breakpoints keep working after F2.
        sidebar = self.query_one(Sidebar)
        showing = sidebar.display
        self.set_class(showing, "-hide-sidebar")
        self.set_class(not showing, "-show-sidebar")
        if showing and sidebar.has_focus_within:  # hidden with the focus: to the input, not nowhere
            self.composer.focus()

    def action_chat_page(self, direction: int) -> None:
        """PageUp/PageDown from the input scroll the conversation."""
        if direction < 0:
            self.view.scroll_page_up()
        else:
            self.view.scroll_page_down()

    def on_screen_resume(self) -> None:
        # Back from any dialog (a passage too) or the command palette: to the input, whose
        # draft is kept; left on a citation, Enter would open the passage again.
        self.composer.focus()

    def on_key(self, event: events.Key) -> None:
        # Typed with the focus on a list, a citation or the conversation (none has
        # bindings on printable keys): the text goes to the input, not nowhere.
        if event.is_printable and event.character and not isinstance(self.focused, (Input, TextArea)):
            event.stop()
            event.prevent_default()
            self.composer.focus()
            self.composer.insert(event.character)
