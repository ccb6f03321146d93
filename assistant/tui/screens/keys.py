"""The keys (F1, and the palette's "Keys"): read from the bindings themselves, so the
list cannot drift from what the keys do. Keys handled outside bindings (the input's Enter,
Ctrl+J, Up/Down; Tab) come with the names the widgets use."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label

from assistant.tui.widgets.composer import NEWLINE_KEYS, Composer

# Longer words for a binding than the footer's one word (keyed on the action: a binding
# missing here still shows, with its own description).
DESCRIPTIONS = {
    "stop": "stop the reply, the summary or the indexing",
    "new_session": "new session",
    "attach": "attach a file or a folder",
    "summarize": "summarize a file (the one highlighted in the sidebar)",
    "export": "export the session to Markdown",
    "copy_answer": "copy the last answer (through the terminal, over SSH too)",
    "toggle_sidebar": "show or hide the sidebar",
    "keys": "this list",
    "quit": "quit (sessions are saved)",
    "screen.chat_page(-1)": "scroll the conversation up, from the input too",
    "screen.chat_page(1)": "scroll the conversation down, from the input too",
}
_NAMES = {"escape": "Esc", "pageup": "PageUp", "pagedown": "PageDown", "enter": "Enter", "tab": "Tab",
          "up": "Up", "down": "Down"}


def key_name(key: str) -> str:
    """"ctrl+shift+x" -> "Ctrl+Shift+X", "escape" -> "Esc", "f2" -> "F2"."""
    return "+".join(_NAMES.get(part, part.upper() if len(part) <= 3 else part.capitalize())
                    for part in key.split("+"))


def bound_keys(bindings: Iterable[Binding | tuple]) -> list[tuple[str, str]]:
    """(keys, what they do) per action, in the order bound; keys of one action together."""
    rows: dict[str, list[str]] = {}
    words: dict[str, str] = {}
    for binding in bindings:
        if not isinstance(binding, Binding):
            continue
        for key in binding.key.split(","):
            rows.setdefault(binding.action, []).append(key_name(key.strip()))
        words.setdefault(binding.action, DESCRIPTIONS.get(binding.action, binding.description.lower()))
    return [(" / ".join(dict.fromkeys(keys)), words[action]) for action, keys in rows.items()]


def key_sections(screen_bindings: Iterable[Binding | tuple], app: App) -> list[tuple[str, list[tuple[str, str]]]]:
    """The sections of the list: the main screen's keys, the input's, moving, the app's."""
    typing = [("Enter", "send the question"),
              (" / ".join(key_name(k) for k in NEWLINE_KEYS), "a new line"),
              ("Up / Down", "earlier questions of the session (like a shell)"),
              *bound_keys(Composer.BINDINGS)]
    moving = [("Tab / Shift+Tab", "to the sources under an answer, the conversation, the sidebar"),
              ("Enter", "open the source (the cited passage) or the sidebar row"),
              ("any letter", "typed outside the input, it goes to the input")]
    everywhere = [(key_name(app.COMMAND_PALETTE_BINDING), "the command palette: every command by name"),
                  *bound_keys(type(app).BINDINGS), ("Esc", "close a dialog (the focus returns to the input)")]
    return [("Conversation", bound_keys(screen_bindings)), ("Input", typing), ("Moving around", moving),
            ("Everywhere", everywhere)]


class KeysScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, screen_bindings: Iterable[Binding | tuple]):
        super().__init__()
        self.screen_bindings = list(screen_bindings)

    def compose(self):
        with Vertical(classes="dialog", id="keys-dialog"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll(id="keys-scroll"):
                for title, rows in key_sections(self.screen_bindings, self.app):
                    yield Label(title, classes="keys-section")
                    for keys, words in rows:
                        with Horizontal(classes="keys-row"):
                            yield Label(keys, classes="keys-key")
                            yield Label(words, classes="keys-what")
            yield Label("Esc, F1 or q closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#keys-scroll").focus()  # the arrows and PageUp/PageDown scroll it
