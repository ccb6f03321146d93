"""The message input: Enter sends, Ctrl+J (or Shift+Enter where the terminal reports it)
starts a new line, Up and Down recall the session's earlier questions (like a shell)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

PLACEHOLDER = "Ask a question · Enter sends · ^J new line"
PLACEHOLDER_WITH_FILES = "Ask about your files · Enter sends · ^J new line"
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
        self.questions: list[str] = []  # the session's questions, oldest first (TextArea.history is undo)
        self._recalled: int | None = None  # index in history of the question shown, None: the draft
        self._draft = ""

    def about_files(self, any_attached: bool) -> None:
        """The hint in the empty input speaks of files only when some are attached."""
        self.placeholder = PLACEHOLDER_WITH_FILES if any_attached else PLACEHOLDER

    # -- history -----------------------------------------------------------------------

    def set_history(self, questions: list[str]) -> None:
        """The questions of the session just opened (oldest first)."""
        self.questions = list(questions)
        self._recalled = None

    def remember(self, question: str) -> None:
        """A question just sent."""
        if not self.questions or self.questions[-1] != question:
            self.questions.append(question)
        self._recalled = None

    def recall(self, step: int) -> bool:
        """Show the previous (-1) or next (+1) question; past the newest, the draft typed
        before. False when there is nowhere to go."""
        if self._recalled is None:
            if step > 0 or not self.questions:
                return False
            self._draft = self.text
            index = len(self.questions) - 1
        else:
            index = self._recalled + step
            if index < 0:
                return False
        if index >= len(self.questions):
            self._recalled = None
            self._show(self._draft)
        else:
            self._recalled = index
            self._show(self.questions[index])
        return True

    def _show(self, text: str) -> None:
        self.text = text
        self.move_cursor(self.document.end)

    # -- keys ------------------------------------------------------------------------------

    async def on_key(self, event: events.Key) -> None:
        # Textual dispatches a key to each class of the widget, subclass first: this runs
        # before TextArea's own handler, which prevent_default() skips.
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
        elif event.key == "up" and self.navigator.is_first_wrapped_line(self.cursor_location) and self.recall(-1):
            event.stop()  # on the first row (as shown, wrapped): the previous question
            event.prevent_default()
        elif (event.key == "down" and self._recalled is not None
              and self.navigator.is_last_wrapped_line(self.cursor_location) and self.recall(1)):
            event.stop()
            event.prevent_default()
