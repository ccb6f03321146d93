"""The status bar: model and engine, what is running, context used, speed, and the time
a reply or summary has been running (live while it runs).

It is bound to the screen's reactive state (`data_bind`): the model, the activity, the
conversation's context, what runs and which session is shown. While a reply or summary
runs it keeps its own live figures from the counts it is given (`count`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.cells import cell_len
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Label, LoadingIndicator

from assistant.tui.host import ModelState
from assistant.tui.text import shown


def now() -> float:
    """The clock of live timings (a function, so snapshot tests can stop it)."""
    return time.monotonic()


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


@dataclass
class LiveRun:
    """The counts of the reply or summary running now."""

    started: float
    summary: bool = False
    generated: int = 0
    first: tuple[float, int] | None = None  # (time, tokens) of the first streamed text
    last: tuple[float, int] | None = None  # ... and of the latest
    context: int = 0  # a summary's current call: the tokens of its prompt

    def speed(self) -> float:
        """Tokens per second since the first streamed text (0 until half a second of it)."""
        if self.first and self.last and self.last[0] - self.first[0] >= 0.5:
            return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
        return 0.0


def _needs(label: Label) -> int:
    """The columns a label takes with its current text: the text, at least its min-width,
    and its margins."""
    minimum = label.styles.min_width
    return max(cell_len(str(label.render())), int(minimum.value) if minimum else 0) + label.styles.margin.width


class StatusBar(Horizontal):
    # Bound to the screen's state.
    model: reactive[ModelState] = reactive(ModelState())
    activity = reactive("")
    context_used = reactive(0)  # the conversation's, as of the last turn
    running = reactive("")  # "", "reply" or "summary"
    session_shown = reactive(0)  # changes when another session is shown: nothing measured yet
    # Its own live figures.
    speed = reactive(0.0)
    elapsed = reactive(-1.0)  # seconds the running reply or summary has taken; < 0: nothing runs
    live_context = reactive(0)  # the context while a reply or summary runs (0: context_used)

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self._live: LiveRun | None = None
        self._ticker: Timer | None = None

    def compose(self):
        yield LoadingIndicator(id="spinner")
        yield Label(id="model")
        yield Label(id="activity")
        yield Label(id="context")
        yield Label(id="speed")
        yield Label(id="elapsed")

    def on_mount(self) -> None:
        self._ticker = self.set_interval(1.0, self._tick, pause=True)
        self._refresh_all()

    @property
    def context_shown(self) -> int:
        return self.live_context or self.context_used

    # -- live figures ------------------------------------------------------------------------

    def watch_running(self, running: str) -> None:
        if running:
            self._live = LiveRun(now(), summary=running == "summary")
            self.elapsed = 0.0
            if self._ticker is not None:
                self._ticker.resume()
        else:
            self._tick()  # the final elapsed time stays until the next run or session
            self._live = None
            self.live_context = 0
            if self._ticker is not None:
                self._ticker.pause()
        self._refresh_if_mounted()

    def watch_session_shown(self) -> None:
        self.speed = 0.0
        self.elapsed = -1.0
        self.live_context = 0

    def count(self, generated: int = 0, context: int = 0) -> None:
        """Tokens written so far by the run (and, for a summary's call, its context)."""
        live = self._live
        if live is None:
            return
        moment = now()
        if generated:
            live.generated = generated
            live.last = (moment, generated)
            if live.first is None:
                live.first = live.last
        if context:
            live.context = context
        self._tick()

    def measured(self, speed: float) -> None:
        """A speed the core measured (tokens/s, 0: none): a finished reply's, or a summary
        call's (its parts are not streamed); kept on show until live figures replace it."""
        if speed:
            self.speed = speed

    def _tick(self) -> None:
        live = self._live
        if live is None:
            return
        self.elapsed = now() - live.started
        self.speed = live.speed() or self.speed
        # A reply's prompt is in the conversation's count once the turn started.
        self.live_context = live.context if live.summary else self.context_used + live.generated

    # -- drawing -------------------------------------------------------------------------------

    def _refresh_all(self) -> None:
        model = self.model
        self.query_one("#spinner").display = model.loading
        self.query_one("#model", Label).update(shown(self.model_text))
        activity = self.query_one("#activity", Label)
        activity.update(shown(self.activity))
        activity.display = bool(self.activity)
        context = self.query_one("#context", Label)
        if model.n_ctx:
            used = self.context_shown
            share = used / model.n_ctx
            context.update(f"ctx {used:,}/{model.n_ctx:,} {share:.0%}")
            context.set_class(0.8 <= share < 0.95, "-high")
            context.set_class(share >= 0.95, "-full")
        else:
            context.update("")
        self.query_one("#speed", Label).update(f"{self.speed:.1f} tok/s" if self.speed else "– tok/s")
        elapsed = self.query_one("#elapsed", Label)
        elapsed.update(clock(self.elapsed) if self.elapsed >= 0 else "")
        elapsed.display = self.elapsed >= 0
        self._fit()

    @property
    def model_text(self) -> str:
        return self.model.label + (f" · {self.model.engine}" if self.model.engine else "")

    def _fit(self) -> None:
        """Share the width: the context, speed and time are always whole; the model name
        and the activity get the rest, each whole when both fit, else the model at least
        half of it (both then end in "…")."""
        if not self.content_region.width:
            return
        labels = {label.id: label for label in self.query(Label)}
        # From the texts just set, not the last layout (a field just shown has no size yet).
        fixed = sum(_needs(label) for name, label in labels.items()
                    if name not in ("model", "activity") and label.display)
        spinner = self.query_one("#spinner")
        fixed += (spinner.styles.width.value + spinner.styles.margin.width  # type: ignore[union-attr]
                  if self.model.loading else 0)
        want_model = shown(self.model_text).cell_length
        want_activity = shown(self.activity).cell_length if self.activity else 0
        room = self.content_region.width - fixed - labels["model"].styles.margin.width
        if want_activity:
            room -= labels["activity"].styles.margin.width
        if want_model + want_activity <= room:
            model_width, activity_width = want_model, want_activity
        else:
            model_width = max(min(want_model, room // 2), room - want_activity, 1)
            activity_width = max(room - model_width, 1)
        labels["model"].styles.max_width = model_width
        labels["activity"].styles.max_width = activity_width

    def on_resize(self) -> None:
        self._fit()

    def _refresh_if_mounted(self) -> None:
        if self.is_mounted:
            self._refresh_all()

    watch_model = watch_activity = watch_context_used = watch_speed = watch_elapsed = _refresh_if_mounted
    watch_live_context = _refresh_if_mounted
