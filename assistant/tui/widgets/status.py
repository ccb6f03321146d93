"""The status bar: model and engine, what is running, context used, speed, and the time
a reply or summary has been running (live while it runs)."""

from __future__ import annotations

import time

from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, LoadingIndicator

from assistant.tui.text import shown


def now() -> float:
    """The clock of live timings (a function, so snapshot tests can stop it)."""
    return time.monotonic()


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class StatusBar(Horizontal):
    model = reactive("no model")
    engine = reactive("")
    activity = reactive("")
    model_loading = reactive(False)
    context_used = reactive(0)
    n_ctx = reactive(0)
    speed = reactive(0.0)
    elapsed = reactive(-1.0)  # seconds the running reply or summary has taken; < 0: nothing runs

    def compose(self):
        yield LoadingIndicator(id="spinner")
        yield Label(id="model")
        yield Label(id="activity")
        yield Label(id="context")
        yield Label(id="speed")
        yield Label(id="elapsed")

    def on_mount(self) -> None:
        self._refresh_all()

    def reset(self) -> None:
        """A new or reopened session: nothing used or measured yet."""
        self.context_used = 0
        self.speed = 0.0
        self.elapsed = -1.0

    def _refresh_all(self) -> None:
        self.query_one("#spinner").display = self.model_loading
        model = self.model + (f" · {self.engine}" if self.engine else "")
        self.query_one("#model", Label).update(shown(model))
        activity = self.query_one("#activity", Label)
        activity.update(shown(self.activity))
        activity.display = bool(self.activity)
        context = self.query_one("#context", Label)
        if self.n_ctx:
            share = self.context_used / self.n_ctx
            context.update(f"ctx {self.context_used:,}/{self.n_ctx:,} {share:.0%}")
            context.set_class(0.8 <= share < 0.95, "-high")
            context.set_class(share >= 0.95, "-full")
        else:
            context.update("")
        self.query_one("#speed", Label).update(f"{self.speed:.1f} tok/s" if self.speed else "– tok/s")
        elapsed = self.query_one("#elapsed", Label)
        elapsed.update(clock(self.elapsed) if self.elapsed >= 0 else "")
        elapsed.display = self.elapsed >= 0

    def watch_model(self) -> None:
        self._refresh_if_mounted()

    watch_engine = watch_activity = watch_model_loading = watch_context_used = watch_n_ctx = watch_speed = watch_model
    watch_elapsed = watch_model

    def _refresh_if_mounted(self) -> None:
        if self.is_mounted:
            self._refresh_all()
