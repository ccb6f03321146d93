"""One widget per message: the user's text, and replies or summaries rendered as
Markdown, streamed as they are written, with their sources and a line of details."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Button, Label, Markdown, ProgressBar, Static
from textual.widgets.markdown import MarkdownStream

from assistant.safetext import printable
from assistant.sources import Sources
from assistant.tui.text import plural, shown
from assistant.tui.widgets import status as status_clock
from assistant.tui.widgets.status import clock

ROLE_TITLES = {"user": "You", "assistant": "XGen", "summary": "Summary", "system": "System"}

# How a reply ended, when the core's notes do not say it: a reply cut at its length limit
# or at the end of the context has a note saying so ("the answer stopped at its limit of
# 512 tokens"), and a stopped summary one saying where ("stopped after 2 of 7 parts"),
# so the details line says each thing once. A full context adds what to do, last.
FINISH_NOTES = {
    "stopped": "stopped",
    "streaming": "interrupted: the app closed while this was being written",
}
CONTEXT_FULL_ADVICE = "start a new session (Ctrl+N) or clear this one (Ctrl+P → Clear)"

# A summary's title says its form (meta "form"); a paragraph is the plain one.
SUMMARY_TITLES = {"bullets": "Bullet-point summary", "words": "Short summary"}


# Characters where str.splitlines() breaks a line but Markdown does not. Textual's
# Markdown.append indexes the text's splitlines() with the line numbers of its Markdown
# parser, so each one of these in a streamed reply (a form feed from a PDF, U+2028 from
# a web page, NEL from Latin-1 text) shifted the re-parse back a line and drew the line
# before it twice. Markdown shows them as spaces anyway.
NOT_MARKDOWN_LINE_BREAKS = str.maketrans({c: " " for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def displayable(markdown: str) -> str:
    """Markdown text as the Markdown widget should get it (see NOT_MARKDOWN_LINE_BREAKS),
    without terminal control characters (assistant/tui/text.py)."""
    return printable(markdown.translate(NOT_MARKDOWN_LINE_BREAKS))


def megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MB"


def describe(meta: dict[str, Any], role: str = "assistant") -> tuple[str, bool]:
    """The details line under a reply, and whether it reports a problem."""
    finish = str(meta.get("finish") or "")
    notes = [str(note) for note in meta.get("notes") or []]
    problem = finish in ("context", "streaming", "error") or bool(notes)
    # A stopped summary's note says where it stopped, and of how many parts: it comes first.
    stopped_summary = role == "summary" and finish == "stopped" and bool(notes)
    parts: list[str] = notes if stopped_summary else []
    if finish == "error":
        parts.append(f"error: {meta.get('error', 'unknown')}")
    elif finish in FINISH_NOTES and not stopped_summary:
        parts.append(FINISH_NOTES[finish])
    stats = meta.get("stats") or {}
    if role == "summary" and stats.get("parts"):
        calls, cached = stats.get("model_calls", 0), stats.get("cached_parts", 0)
        parts.append(("" if stopped_summary else f"{plural(stats['parts'], 'part')} · ")
                     + plural(calls, "model call")
                     + (f" · {cached} cached" if cached else "") + f" · {stats.get('seconds', 0):.1f} s")
    elif stats.get("generated"):
        speed = stats.get("tokens_per_second") or 0
        parts.append(f"{stats['generated']} tokens" + (f" · {speed:.1f} tok/s" if speed else ""))
    if not stopped_summary:
        parts += notes
    if finish == "context":
        parts.append(CONTEXT_FULL_ADVICE)
    return " · ".join(parts), problem


def sources_line(meta: dict[str, Any]) -> str:
    """The passages the model was given, as `xgen ask` lists them: * marks the cited ones."""
    return Sources.from_meta(meta).one_line


def citation_title(citation: dict[str, Any], position: int = 1) -> str:
    from assistant.store import citation_label

    return f"[{citation.get('number') or position}] {citation_label(citation)}"


class CitationButton(Button):
    def __init__(self, citation: dict[str, Any], position: int):
        super().__init__(shown(citation_title(citation, position)), compact=True, classes="citation")
        self.citation = citation
        self.tooltip = "Open the passage"


class GivenButton(Button):
    """The passages the model was given but the answer does not cite, to open one."""

    SHOWN = 8  # numbers on the button; the list it opens has them all

    def __init__(self, passages: list[dict[str, Any]]):
        numbers = " ".join(f"[{p.get('number')}]" for p in passages[:self.SHOWN])
        more = f" +{len(passages) - self.SHOWN}" if len(passages) > self.SHOWN else ""
        super().__init__(shown(f"also given: {numbers}{more}…"), compact=True, classes="citation given")
        self.passages = passages
        self.tooltip = "Open a passage the model was given but the answer does not cite"


class UserMessage(Vertical):
    def __init__(self, text: str, message_id: int | None = None):
        super().__init__(classes="message user", id=f"msg-{message_id}" if message_id else None)
        self.text = text

    def compose(self):
        yield Label(ROLE_TITLES["user"], classes="role")
        yield Static(shown(self.text), classes="body")


class ReplyMessage(Vertical):
    """A reply or a summary: Markdown that can grow while it is streamed."""

    WAITING = "…"

    def __init__(self, message_id: int, text: str = "", meta: dict[str, Any] | None = None, *,
                 role: str = "assistant", title: str | None = None, streaming: bool = False):
        super().__init__(classes=f"message {role}", id=f"msg-{message_id}")
        self.message_id = message_id
        self.role = role
        self.title = title or ROLE_TITLES.get(role, role)
        self.text = text
        self.meta = dict(meta or {})
        self.streaming = streaming
        self._stream: MarkdownStream | None = None
        self._streamed: list[str] = []

    def compose(self):
        yield Label(shown(self.title), classes="role")
        yield from self.compose_progress()
        yield Markdown(displayable(self.text) or (self.WAITING if self.streaming else ""), open_links=False)
        yield Static("", classes="meta")
        yield Static("", classes="sources")
        yield Vertical(classes="citations")

    def compose_progress(self):
        return ()

    def on_mount(self) -> None:
        if self.streaming:
            self._set_meta("writing…  Esc stops", False)
        else:
            self.show_meta(self.meta)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    @property
    def streamed_text(self) -> str:
        return "".join(self._streamed)

    async def append(self, piece: str) -> None:
        if self._stream is None:
            await self.markdown.update("")
            self._stream = Markdown.get_stream(self.markdown)
        self._streamed.append(piece)
        await self._stream.write(displayable(piece))

    async def finish(self, text: str, meta: dict[str, Any]) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.streaming = False
        self.text = text
        self.meta = dict(meta)
        await self.markdown.update(displayable(text) or "*(no text)*")
        self.show_meta(self.meta)

    def _set_meta(self, text: str, problem: bool) -> None:
        line = self.query_one(".meta", Static)
        line.update(shown(text))
        line.display = bool(text)
        line.set_class(problem, "-problem")

    def show_meta(self, meta: dict[str, Any]) -> None:
        self._set_meta(*describe(meta, self.role))
        line = self.query_one(".sources", Static)
        text = sources_line(meta)
        line.update(shown(text))
        line.display = bool(text)
        box = self.query_one(".citations", Vertical)
        box.remove_children()
        citations = list(meta.get("citations") or [])
        given = [g for g in meta.get("given") or [] if isinstance(g, dict)]
        box.display = bool(citations or given)
        buttons: list[Button] = [CitationButton(c, i) for i, c in enumerate(citations, 1)]
        if given:
            buttons.append(GivenButton(given))
        if buttons:
            box.mount_all(buttons)

    class CitationOpened(Message):
        """A citation button was pressed: the screen shows the passage."""

        def __init__(self, citation: dict[str, Any]):
            super().__init__()
            self.citation = citation

    class GivenOpened(Message):
        """The "also given" button was pressed: the screen offers those passages."""

        def __init__(self, passages: list[dict[str, Any]]):
            super().__init__()
            self.passages = passages

    @on(Button.Pressed, ".citation")
    def open_citation(self, event: Button.Pressed) -> None:
        event.stop()
        if isinstance(event.button, GivenButton):
            self.post_message(self.GivenOpened(event.button.passages))
        elif isinstance(event.button, CitationButton):
            self.post_message(self.CitationOpened(event.button.citation))


class SummaryMessage(ReplyMessage):
    """A summary in progress shows which part is being read, with a progress bar, and
    inside the part the tokens of its prompt read so far (from engines that report them),
    the tokens written and its time (ticking each second)."""

    def __init__(self, message_id: int, text: str = "", meta: dict[str, Any] | None = None, *,
                 title: str | None = None, streaming: bool = False):
        name = (meta or {}).get("file")
        kind = SUMMARY_TITLES.get(str((meta or {}).get("form")), "Summary")
        super().__init__(message_id, text, meta, role="summary", streaming=streaming,
                         title=title or (f"{kind} of {name}" if name else kind))
        self._stage = "Preparing…"
        self._stage_started = status_clock.now()
        self._read: tuple[int, int] | None = None  # prompt tokens read, of its length
        self._written = 0
        self._ticker = None

    def compose_progress(self):
        yield Label("", classes="stage")
        yield ProgressBar(show_eta=False, classes="parts")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(".stage").display = self.streaming
        self.query_one(ProgressBar).display = self.streaming
        if self.streaming:
            self._show_stage()
            self._ticker = self.set_interval(1.0, self._show_stage)

    def _show_stage(self) -> None:
        parts = [self._stage]
        if self._read is not None:
            parts.append(f"{self._read[0]:,} of {self._read[1]:,} tokens read")
        if self._written:
            parts.append(f"{self._written:,} written")
        parts.append(clock(status_clock.now() - self._stage_started))
        self.query_one(".stage", Label).update(shown(" · ".join(parts)))

    def set_written(self, generated: int) -> None:
        """Tokens streamed so far by the call writing the summary."""
        if generated:
            self._written = generated
            self._show_stage()

    def set_progress(self, stage: str, done: int, total: int) -> None:
        if stage == "prompt":  # inside the current part: its prompt read so far
            self._read = (done, total)
            self._show_stage()
            return
        if stage == "read":  # a file too large to load, read in parts: bytes read (total 0: unknown)
            label = f"Reading the file: {megabytes(done)}" + (f" of {megabytes(total)}" if total else "")
        elif stage == "map":
            label = f"Reading part {min(done + 1, total)} of {total}" if done < total else f"Read all {total} parts"
        elif stage.startswith("combine"):
            label = f"Combining summaries ({stage.removeprefix('combine ')}): {min(done + 1, total)} of {total}"
        else:
            label = "Writing the summary"
        if label != self._stage:  # a new part: its own counts and time
            self._stage, self._stage_started = label, status_clock.now()
            self._read, self._written = None, 0
        self._show_stage()
        bar = self.query_one(ProgressBar)
        bar.display = stage != "final"  # one call: the text streaming below shows the progress
        bar.update(total=total or None, progress=done)

    async def finish(self, text: str, meta: dict[str, Any]) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self.query_one(".stage").display = False
        self.query_one(ProgressBar).display = False
        await super().finish(text, meta)


def message_widget(role: str, message_id: int, content: str, meta: dict[str, Any]) -> Vertical:
    if role == "user":
        return UserMessage(content, message_id)
    if role == "summary":
        return SummaryMessage(message_id, content, meta)
    return ReplyMessage(message_id, content, meta, role=role)
