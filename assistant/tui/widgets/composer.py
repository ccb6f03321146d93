"""The message input: Enter sends, Ctrl+J (or Shift+Enter where the terminal reports it)
starts a new line."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

PLACEHOLDER = "Ask about your files · Enter sends · ^J new line"
NEWLINE_KEYS = ("ctrl+j", "shift+enter")


class Composer(TextArea):
    # PageUp/PageDown scroll the conversation (the input is a few lines at most).
    BINDINGS = [Binding("pageup", "screen.chat_page(-1)", "Scroll up", show=False),
                Binding("pagedown", "screen.chat_page(1)", "Scroll down", show=False)]

    @dataclass
    class Submitted(Message):
        composer: "Composer"
        text: str

        @property
        def control(self) -> "Composer":
            return self.composer

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         placeholder=PLACEHOLDER, highlight_cursor_line=False)

    async def _on_key(self, event: events.Key) -> None:
        # Runs before TextArea's own handler, which prevent_default() skips.
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            text = self.text.strip()
            if text:
                self.post_message(self.Submitted(self, text))
        elif event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
