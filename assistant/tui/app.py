"""The xgen-local terminal app and its factory, shared by `xgen`/`xgen chat` and the tests."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from collections.abc import Iterable, Sequence

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from assistant.modelref import choose_model
from assistant.safetext import printable
from assistant.session import Conversation, absolute
from assistant.store import Store
from assistant.tui.events import ModelFailed, ModelLoaded
from assistant.tui.host import ModelState
from assistant.tui.model import EngineFactory, LoadedModel, ModelLoader, as_loaded, is_no_model, local_models
from assistant.tui.screens.attach import ModelFileScreen
from assistant.tui.screens.keys import KeysScreen
from assistant.tui.chat import ChatScreen
from assistant.tui.screens.picker import PickerScreen
from assistant.tui.screens.welcome import NoModelScreen
from models.errors import XGenError
from models.paths import data_dir


BROWSE = "browse:"  # the model picker's option to choose a .gguf file anywhere


class XGenApp(App[None]):
    CSS_PATH = "xgen.tcss"
    TITLE = "xgen-local"
    SUB_TITLE = "private, offline XGen-7B"
    # Keep Ctrl+P for the command palette; the footer shows it on the right.
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", tooltip="Quit xgen-local (sessions are saved)", priority=True),
                Binding("f1", "keys", "Keys", tooltip="List the keys")]

    model_state: reactive[ModelState] = reactive(ModelState(), always_update=True)  # what the status bar shows of the model

    def __init__(self, engine_factory: EngineFactory, store: Store, *, files: Sequence[str] = (),
                 model: str | None = None, session_id: str | None = None):
        super().__init__()
        self.engine_factory = engine_factory
        self.store = store
        self.conversation = Conversation(store)
        self.initial_files = [str(f) for f in files]
        self.initial_session = session_id
        self.model_ref = model
        self.loaded: LoadedModel | None = None
        self.model_loading = False
        self.engine_lock = threading.Lock()  # one generation at a time; held while closing an engine
        self.chat = ChatScreen(self, files=self.initial_files, session_id=session_id)

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every toast of the app: its text often names files or quotes errors from outside,
        so it is shown without control characters and, unless asked, without markup."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout,
                       markup=markup)

    def get_default_screen(self) -> Screen:
        return self.chat

    def on_mount(self) -> None:
        self.load_model(self.model_ref or self._reopened_session_model())

    def _reopened_session_model(self) -> str | None:
        """Without --model, a reopened session comes back with the model it was using (by
        the core's rule, `choose_model`)."""
        if self.initial_files:
            return None
        try:
            recent = self.store.list_sessions(1)
            session_id = self.initial_session or (recent[0].id if recent else None)
            ref = self.store.get_session(session_id).model_ref if session_id else ""
        except XGenError:
            return None
        return choose_model(None, ref).ref

    # -- the model -----------------------------------------------------------------------

    def load_model(self, ref: str | None) -> None:
        self.model_loading = True
        self.model_state = ModelState(f"loading {Path(ref).name if ref else 'the default model'}…", loading=True)
        self._load_worker(ref)

    @work(thread=True, exclusive=True, group="model")
    def _load_worker(self, ref: str | None) -> None:
        old, self.loaded = self.loaded, None
        if old is not None:
            with self.engine_lock:  # never free a model that is generating
                old.engine.close()
        try:
            loaded = as_loaded(self.engine_factory(ref), ref)
        except XGenError as exc:
            self.post_message(ModelFailed(ref, str(exc), is_no_model(exc)))
            return
        except (OSError, RuntimeError, ValueError) as exc:  # a broken backend is reported, not raised
            self.post_message(ModelFailed(ref, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(ModelLoaded(loaded))

    def on_model_loaded(self, event: ModelLoaded) -> None:
        model = event.model
        self.loaded = model
        self.model_loading = False
        self.model_ref = model.ref
        self.conversation.forget_context()
        # The demo, taken without being asked for: say so, visibly.
        label = f"{model.name} (demo: random weights)" if model.note else model.name
        self.model_state = ModelState(label, model.engine_name, model.engine.n_ctx)
        if model.note:
            self.notify(model.note[0].upper() + model.note[1:] + ".", title="Demo model", severity="warning",
                        timeout=30)

    def on_model_failed(self, event: ModelFailed) -> None:
        self.model_loading = False
        self.model_state = ModelState("no model")
        if event.no_model:
            self.push_screen(NoModelScreen(), callback=self._no_model_choice)
        else:
            self.notify(f"{event.error}. Ctrl+P → Switch model to pick another one.",
                        title="Cannot load the model", severity="error", timeout=15)

    def _no_model_choice(self, choice: str | None) -> None:
        if choice == "retry":
            self.load_model(self.model_ref)
        elif choice == "quit":
            self.exit()

    def action_switch_model(self) -> None:
        if self.chat.busy:
            self.notify("XGen is still writing. Esc stops it first.", severity="warning")
            return
        options = local_models()
        current = self.loaded.ref if self.loaded else None
        if current and current not in [ref for ref, _ in options]:
            options.insert(0, (current, f"{current}  (current)"))
        hint = ("Enter loads it · Esc cancels · `xgen models` lists more" if options else
                "No model in xgen's folder yet: browse to a .gguf file, or run `xgen demo` or `xgen pull`")
        options.append((BROWSE, "Browse for a .gguf file…"))
        self.push_screen(PickerScreen("Switch model", options, highlighted=current, hint=hint),
                         callback=self._model_chosen)

    def _model_chosen(self, ref: str | None) -> None:
        if ref == BROWSE:
            self.push_screen(ModelFileScreen(), callback=self._model_file_chosen)
        elif ref:
            self.load_model(ref)

    def _model_file_chosen(self, path: str | None) -> None:
        if path:
            self.load_model(str(absolute(path)))

    def close_model(self) -> None:
        """Free the model once no worker uses it (the command line calls this after run())."""
        self.chat.stop()
        loaded, self.loaded = self.loaded, None
        if loaded is not None:
            with self.engine_lock:
                loaded.engine.close()

    # -- screenshots -----------------------------------------------------------------------

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """Save an SVG screenshot (the palette's "Screenshot") in xgen's data folder,
        `screenshots/` (created on demand), not ~/Downloads, which may not exist, and say
        where. Returns the file's path, or None if it could not be written."""
        folder = Path(path).expanduser() if path else data_dir() / "screenshots"
        name = filename or f"xgen-local-{datetime.now().strftime(time_format or '%Y-%m-%d_%H-%M-%S')}.svg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = Path(self.save_screenshot(name, str(folder))).resolve()
        except OSError as exc:
            self.notify(f"Cannot write {folder / name}: {exc.strerror or exc}", title="Screenshot not saved",
                        severity="error", timeout=10)
            return None
        self.notify(str(saved), title="Screenshot saved", timeout=10)
        return str(saved)

    # -- the command palette ---------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if screen is self.chat:
            chat = self.chat
            if chat.busy:
                yield SystemCommand("Stop", "Stop the reply being written (Esc)", chat.action_stop)
            yield SystemCommand("New session", "Start an empty conversation (Ctrl+N)", chat.action_new_session)
            yield SystemCommand("Switch session", "Open a saved conversation", chat.action_switch_session)
            yield SystemCommand("Rename session", "Give this conversation another title",
                                chat.action_rename_session)
            yield SystemCommand("Delete session", "Delete a saved conversation (asks first)",
                                chat.action_delete_session)
            yield SystemCommand("Attach file", "Add a file to this session (Ctrl+O)", chat.action_attach)
            yield SystemCommand("Detach file", "Remove a file from this session (the file itself stays)",
                                chat.action_detach_file)
            yield SystemCommand("Summarize file", "Summarize an attached file in a paragraph (Ctrl+S)",
                                chat.action_summarize)
            yield SystemCommand("Summarize file as bullet points", "Summarize an attached file as a list",
                                lambda: chat.action_summarize("bullets"))
            yield SystemCommand("Switch model", "Load another model from this machine", self.action_switch_model)
            yield SystemCommand("Export session to Markdown", "Write this conversation to a .md file (Ctrl+T)",
                                chat.action_export)
            yield SystemCommand("Copy last answer", "Copy it to the clipboard, over SSH too (Ctrl+G)",
                                chat.action_copy_answer)
            yield SystemCommand("Clear", "Start afresh with the same files; this conversation stays saved",
                                chat.action_clear)
            yield SystemCommand("Toggle sidebar", "Show or hide sessions and files (F2)",
                                chat.action_toggle_sidebar)
        yield SystemCommand("Keys", "List the keys (F1)", self.action_keys)
        # Textual's own "Keys" panel is left out: Esc did not close it and it squeezed the
        # footer; the list above is a dialog like the others.
        yield from (command for command in super().get_system_commands(screen)
                    if command.callback not in (self.action_show_help_panel, self.action_hide_help_panel))

    def action_keys(self) -> None:
        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen(ChatScreen.BINDINGS))


def create_app(engine_factory: EngineFactory | None = None, store: Store | None = None, *,
               files: Sequence[str] = (), model: str | None = None, engine_kind: str | None = None,
               n_ctx: int | None = None, threads: int | None = None, kv_cache: str | None = None,
               session_id: str | None = None) -> XGenApp:
    """The app. `engine_factory(model_ref)` is called in a worker to load the model (by
    default the command line's resolve_model + open_engine); `store` defaults to the
    user's sessions database."""
    factory = engine_factory or ModelLoader(model, engine_kind, n_ctx, threads, kv_cache)
    return XGenApp(factory, store if store is not None else Store(), files=files, model=model,
                   session_id=session_id)
