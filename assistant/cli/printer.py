"""How the command line shows a job of the core: its events as they come (streamed text on
stdout; notes and progress lines on stderr), then the sources of an answer or the end of
a summary. Everything goes through the streams main.py wraps (see cli/output.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from assistant.cli.output import StatusLine
from assistant.jobevents import JobEvents

if TYPE_CHECKING:  # the core's jobs are imported when a command runs one, not by `xgen --help`
    from assistant.session import Sources, SummaryResult


class EventPrinter(JobEvents):
    """Prints a job's events; `quiet` (--json) keeps the standard output for the result."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._line_ended = False  # the streamed text has been followed by a newline
        self._stage_line = ""  # the summary stage shown on the progress line, while it is shown
        self._line = StatusLine()  # the progress line
        self._index = None  # the library's progress line, while the index is brought up to date

    def indexing(self, event) -> None:
        """The index's progress on stderr (--json too: it keeps stdout for the result)."""
        from assistant.cli.library import IndexPrinter
        from assistant.library import Done

        if self._index is None:
            self._index = IndexPrinter(after=0.5)
        self._index(event)
        if isinstance(event, Done):
            self._index.clear()
            self._index = None

    def text(self, piece: str) -> None:
        if not self.quiet:
            click.echo(piece, nl=False)

    def note(self, text: str) -> None:
        if not self.quiet:
            self.end_text()
            click.echo(f"note: {text}", err=True)

    def end_text(self) -> None:
        """End the streamed text's line, once per job."""
        if not self.quiet and not self._line_ended:
            click.echo("")
            self._line_ended = True

    def finished(self) -> None:
        """After a job returned: end its text; the next job starts a new one."""
        self.end_text()
        self._line_ended = False

    def progress(self, stage: str, done: int, total: int) -> None:
        """A summary's progress on one stderr line; inside a part, the tokens of its prompt
        read so far follow the part (engines that report them). The final call has no
        line: its text streams to stdout."""
        # The speed is in the summary's stats at the end; a call's context is for the app's status bar.
        if self.quiet or stage in ("speed", "call"):
            return
        if stage == "prompt":
            if self._stage_line:
                self._line.show(f"{self._stage_line}, {done:,} of {total:,} tokens read…")
            return
        if stage == "final":
            self._stage_line = ""
            return
        if stage == "read" and not total:  # streamed standard input: its size is known at the end
            self._stage_line = f"read {done / 2**20:,.1f} MiB"
        elif stage == "read":  # a file read in parts: bytes, not parts
            self._stage_line = f"read {done / 2**20:,.1f} of {total / 2**20:,.1f} MiB ({done / max(total, 1):.0%})"
            if done >= total:
                self._line.show(self._stage_line + "…", end="\n")
                self._stage_line = ""
                return
        elif done < total:
            self._stage_line = f"{stage}: part {done + 1} of {total}"
        else:
            self._line.show(f"{stage}: {total} parts done.", end="\n")
            self._stage_line = ""
            return
        self._line.show(self._stage_line + "…")


def print_sources(sources: Sources) -> None:
    """The passages the model was given, consecutive uncited ones on one line; * marks the
    cited, each with the start of its text."""
    if not sources:
        return
    click.echo(f"\n{sources.heading}")
    for source in sources.groups:
        click.echo(f"  {source.line}" if source.cited else f"    {source.line}")
        if source.cited:
            click.echo(_indent(source.text.strip()))


def print_summary_end(result: SummaryResult) -> None:
    """After a summary's text (and notes): the parts done if it stopped early, and its figures."""
    if result.stopped and result.partials and not result.text:
        click.echo("\nSummaries of the parts done so far:\n", err=True)
        for i, partial in enumerate(result.partials, 1):
            click.echo(f"[part {i}] {partial}\n")
    s = result.stats
    click.echo(f"({s.document_tokens} document tokens, {s.parts} parts, {s.model_calls} model calls, "
               f"{s.cached_parts} cached, {s.seconds:.1f} s)", err=True)


def _indent(text: str, width: int = 300) -> str:
    short = text if len(text) <= width else text[:width] + "…"
    return "\n".join("      " + line for line in short.splitlines())
