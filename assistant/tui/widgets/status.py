"""The status bar: model and engine, what is running, context used, speed of the last reply."""

from __future__ import annotations

from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, LoadingIndicator


class StatusBar(Horizontal):
    model = reactive("no model")
    engine = reactive("")
    activity = reactive("")
    model_loading = reactive(False)
    context_used = reactive(0)
    n_ctx = reactive(0)
    speed = reactive(0.0)

    def compose(self):
        yield LoadingIndicator(id="spinner")
        yield Label(id="model")
        yield Label(id="activity")
        yield Label(id="context")
        yield Label(id="speed")

    def on_mount(self) -> None:
        self._refresh_all()

    def _refresh_all(self) -> None:
        self.query_one("#spinner").display = self.model_loading
        model = self.model + (f" · {self.engine}" if self.engine else "")
        self.query_one("#model", Label).update(model)
        activity = self.query_one("#activity", Label)
        activity.update(self.activity)
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

    def watch_model(self) -> None:
        self._refresh_if_mounted()

    watch_engine = watch_activity = watch_model_loading = watch_context_used = watch_n_ctx = watch_speed = watch_model

    def _refresh_if_mounted(self) -> None:
        if self.is_mounted:
            self._refresh_all()
