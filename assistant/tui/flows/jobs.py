"""The job runner: asks and summaries, one at a time, in a worker thread.

A widget with nothing to draw: it owns the workers and the stop flag, so the screen only
calls `ask`, `summarize` and `stop`. The job's events arrive as messages (tui/events.py:
TurnStarted, ReplyText, SummaryProgress, then ReplyDone or TurnFailed), posted to this
widget from the worker and bubbling up to the screen."""

from __future__ import annotations

import threading

from textual import work
from textual.widget import Widget

from assistant.modelref import LoadedModel
from assistant.session import SummaryForm
from assistant.tui import tasks
from assistant.tui.host import Host


class JobRunner(Widget):
    DEFAULT_CSS = "JobRunner { display: none; }"

    def __init__(self, host: Host, *, id: str | None = None):
        super().__init__(id=id)
        self.host = host
        self._stop = threading.Event()

    def _fresh_stop(self) -> threading.Event:
        self._stop = threading.Event()
        return self._stop

    def ask(self, model: LoadedModel, question: str) -> None:
        """Hand the question to the core; the messages appear once it has saved them."""
        self._ask(model, question, self._fresh_stop())

    def summarize(self, model: LoadedModel, source, form: SummaryForm) -> None:
        self._summarize(model, source, form, self._fresh_stop())

    def stop(self) -> None:
        """Stop the running job (what it wrote so far is kept); nothing if none runs."""
        self._stop.set()

    def on_unmount(self) -> None:
        self._stop.set()  # let a running worker return, so the app can exit

    @work(thread=True, exclusive=True, group="inference")
    def _ask(self, model: LoadedModel, question: str, stop: threading.Event) -> None:
        with self.host.engine_lock:
            tasks.run_ask(self.host.conversation, model, question, stop, self.post_message)

    @work(thread=True, exclusive=True, group="inference")
    def _summarize(self, model: LoadedModel, source, form: SummaryForm, stop: threading.Event) -> None:
        with self.host.engine_lock:
            tasks.run_summary(self.host.conversation, model, source, form, stop, self.post_message)
