"""The scrolling conversation: the messages of the open session, newest at the bottom."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from assistant.store import Message
from assistant.tui.widgets.messages import ReplyMessage, message_widget

EMPTY_HINT = ("Ask a question below, or attach a file with Ctrl+O and summarize it with Ctrl+S.\n"
              "Ctrl+P opens the command palette.")


class ConversationView(VerticalScroll):
    def compose(self):
        yield Static(EMPTY_HINT, id="empty-hint")

    def on_mount(self) -> None:
        self.anchor()

    async def show(self, messages: list[Message]) -> None:
        """Replace what is shown with `messages`."""
        await self.remove_children(".message")
        widgets = [message_widget(m.role, m.id, m.content, m.meta) for m in messages]
        self.query_one("#empty-hint").display = not widgets
        if widgets:
            await self.mount_all(widgets)
        self.anchor()

    async def add(self, *widgets: Widget) -> None:
        self.query_one("#empty-hint").display = False
        for widget in widgets:  # a message of a session deleted elsewhere, whose id the store reused
            if widget.id:
                await self.query(f"#{widget.id}").remove()
        await self.mount_all(widgets)
        self.anchor()

    async def take_back(self, message_ids: tuple[int, ...]) -> None:
        """Remove the messages of a turn that stored nothing after all."""
        for message_id in message_ids:
            await self.query(f"#msg-{message_id}").remove()
        self.query_one("#empty-hint").display = not self.query(".message")

    def reply(self, message_id: int) -> ReplyMessage | None:
        found = self.query(f"#msg-{message_id}")
        widget = found.first() if found else None
        return widget if isinstance(widget, ReplyMessage) else None

    def last_reply(self) -> ReplyMessage | None:
        replies = [w for w in self.query(ReplyMessage) if w.text.strip()]
        return replies[-1] if replies else None
