"""The xgen-local terminal app and its factory, shared by `xgen`/`xgen chat` and the tests."""

from __future__ import annotations

import sys
import threading
from datetime import datetime
from pathlib import Path
from collections.abc import Iterable, Sequence

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from assistant.modelref import DEMO_NOTE, choose_model, is_demo
from assistant.safetext import printable
from assistant.session import Conversation, absolute
from assistant.store import SessionClaims, Store
from assistant.tui.events import ModelFailed, ModelLoaded
from assistant.tui.host import ModelState
from assistant.tui.model import EngineFactory, LoadedModel, ModelLoader, as_loaded, is_no_model, local_models
from assistant.tui.screens.attach import ModelFileScreen
from assistant.tui.screens.keys import KeysScreen
from assistant.tui.chat import ChatScreen
from assistant.tui.screens.dialogs import TextScreen
from assistant.tui.screens.picker import PickerScreen
from assistant.tui.screens.welcome import NoModelScreen
from assistant.tui.text import full_stop, sentence
from models.errors import XGenError
from models.paths import data_dir


BROWSE = "browse:"  # the model picker's option to choose a .gguf file anywhere
CONNECT = "connect:"  # ... to type a server's URL
RETRY = "retry:"  # ... to load again the model that failed (a server down then)


def _build_demo(echo) -> Path:
    from converter.demo import build_demo  # the code of `xgen demo`; torch and the converter load here

    return build_demo(echo=echo)


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
        self.conversation = Conversation(store, claims=SessionClaims(store.path))
        self.initial_files = [str(f) for f in files]
        self.initial_session = session_id
        self.model_ref = model
        self.loaded: LoadedModel | None = None
        self.model_loading = False
        self.failed: tuple[str | None] | None = None  # (ref,) of the last load that failed, for Retry
        self.engine_lock = threading.Lock()  # one generation at a time; held while closing an engine
        self.chat = ChatScreen(self, files=self.initial_files, session_id=session_id)

    def run(self, *args, **kwargs):
        """Run in the terminal; without one (`xgen < /dev/null > log`, cron, a pipe) the app
        would run on unseen until killed, so it refuses, pointing to the commands that work."""
        terminal = sys.stdin is not None and sys.stdin.isatty() and sys.stdout is not None and sys.stdout.isatty()
        if not terminal and not kwargs.get("headless"):  # headless (snapshots) needs none
            raise XGenError("the app needs a terminal (standard input and output are not one); "
                            "without one, use `xgen ask FILE -q QUESTION` or `xgen summarize FILE`")
        return super().run(*args, **kwargs)

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

    def on_unmount(self) -> None:
        self.conversation.close()  # another app may now take the session without a warning

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
        # The model in use stays until the new one has loaded: a bad pick loses nothing.
        try:
            loaded = as_loaded(self.engine_factory(ref), ref)
        except XGenError as exc:
            self.post_message(ModelFailed(ref, str(exc), is_no_model(exc)))
            return
        except (OSError, RuntimeError, ValueError) as exc:  # a broken backend is reported, not raised
            self.post_message(ModelFailed(ref, f"{type(exc).__name__}: {exc}"))
            return
        with self.engine_lock:  # never free a model that is generating
            old, self.loaded = self.loaded, None
            if old is not None:
                old.engine.close()
        self.post_message(ModelLoaded(loaded))

    def _show_model(self, model: LoadedModel) -> None:
        # The demo, however it was loaded (at start, by Retry, by Switch model): say so, visibly.
        label = f"{model.name} (demo: random weights)" if is_demo(model.location) else model.name
        self.model_state = ModelState(label, model.engine_name, model.engine.n_ctx)

    def on_model_loaded(self, event: ModelLoaded) -> None:
        model = event.model
        self.loaded = model
        self.model_loading = False
        self.failed = None
        self.model_ref = model.ref
        self.conversation.forget_context()
        self.conversation.use_model(model)
        self._show_model(model)
        if is_demo(model.location):
            self.notify(sentence(DEMO_NOTE), title="Demo model", severity="warning", timeout=30)
        if model.note:  # how it was fitted (a smaller context, a q8_0 KV cache)
            self.notify(sentence(model.note), title="Model", timeout=15)

    def on_model_failed(self, event: ModelFailed) -> None:
        self.model_loading = False
        self.failed = (event.ref,)
        if self.loaded is not None:  # a switch that failed: the model in use stays
            self._show_model(self.loaded)
            self.notify(f"{full_stop(event.error)} Still using {self.loaded.name}.", title="Cannot load the model",
                        severity="error", timeout=15)
            return
        self.model_state = ModelState("no model")
        if event.no_model:
            self.push_screen(NoModelScreen(_build_demo), callback=self._no_model_choice)
        else:
            self.notify(f"{full_stop(event.error)} Ctrl+P → Switch model to retry, connect to a server or "
                        "pick another model.", title="Cannot load the model", severity="error", timeout=15)

    def _no_model_choice(self, choice: str | None) -> None:
        if choice == "retry":
            self.load_model(self.model_ref)
        elif choice and choice.startswith("load:"):  # the demo, just built
            self.load_model(choice.removeprefix("load:"))
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
                "No model in xgen's folder yet: browse to a .gguf file, connect to a server, or run "
                "`xgen demo` or `xgen pull`")
        if self.failed is not None:
            failed = self.failed[0]
            options.insert(0, (RETRY, f"Retry {failed if failed else 'the default model'}  (failed)"))
        options.append((CONNECT, "Connect to a server URL…"))
        options.append((BROWSE, "Browse for a .gguf file…"))
        self.push_screen(PickerScreen("Switch model", options, highlighted=RETRY if self.failed else current,
                                      hint=hint), callback=self._model_chosen)

    def _model_chosen(self, ref: str | None) -> None:
        if ref == BROWSE:
            self.push_screen(ModelFileScreen(), callback=self._model_file_chosen)
        elif ref == CONNECT:
            self.push_screen(TextScreen("Connect to a server", "http://127.0.0.1:8080",
                                        "An OpenAI-compatible server (llama-server) · Enter connects · Esc cancels"),
                             callback=self._url_chosen)
        elif ref == RETRY and self.failed is not None:
            self.load_model(self.failed[0])
        elif ref:
            self.load_model(ref)

    def _url_chosen(self, url: str | None) -> None:
        if not url:
            return
        if not url.startswith(("http://", "https://")):
            self.notify(f"{url} is no server address: give one like http://127.0.0.1:8080.",
                        title="Not connected", severity="error", timeout=10)
            return
        self.load_model(url)

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
