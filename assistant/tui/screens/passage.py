"""A cited passage, opened from a reply's sources.

Source text is often hard-wrapped (a line break every 70 columns); shown as is, in a
dialog of another width, every line wraps again and the text reads ragged. So each
paragraph is reflowed (its lines joined) and labelled with the lines it spans in the
file; lines that are structure, not prose (list items, indented code, tables,
headings), keep their breaks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from assistant.tui.widgets.messages import citation_title
from assistant.tui.text import shown

# A line that starts a new line even inside a paragraph: a list item, a table row, a
# heading, an indented (code) line.
KEEPS_ITS_BREAK = re.compile(r"^(\s+\S|[-*+•]\s|\d+[.)]\s|\||#)")


@dataclass(frozen=True)
class Paragraph:
    first: int  # line numbers in the passage (1: its first line)
    last: int
    text: str


def reflow(text: str) -> list[Paragraph]:
    """The paragraphs of `text` (split at blank lines), each with its lines joined by
    spaces except before a line that keeps its break (KEEPS_ITS_BREAK)."""
    paragraphs: list[Paragraph] = []
    lines: list[str] = []
    first = 0

    def close(last: int) -> None:
        if lines:
            paragraphs.append(Paragraph(first, last, "".join(lines)))
            lines.clear()

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            close(number - 1)
            continue
        if not lines:
            first = number
            lines.append(line.rstrip())
        elif KEEPS_ITS_BREAK.match(line):
            lines.append("\n" + line.rstrip())
        else:
            lines.append(" " + line.strip())
    close(len(text.splitlines()))
    return paragraphs


def line_range(paragraph: Paragraph, start_line: int | None) -> str:
    """Where the paragraph is in the file ("12-15"), or "" when the passage's first line
    is not known (a PDF's pages, a citation saved without it)."""
    if start_line is None:
        return ""
    first, last = start_line + paragraph.first - 1, start_line + paragraph.last - 1
    return f"{first}" if first == last else f"{first}-{last}"


class PassageScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close"), Binding("c", "copy", "Copy passage")]

    def __init__(self, citation: dict[str, Any]):
        super().__init__()
        self.citation = citation

    def compose(self):
        text = str(self.citation.get("text") or "").strip("\n")
        start = self.citation.get("start_line")
        start = start if isinstance(start, int) else None
        paragraphs = reflow(text)
        with Vertical(id="passage-dialog", classes="dialog"):
            yield Label(shown(citation_title(self.citation)), classes="dialog-title")
            with VerticalScroll(id="passage-scroll"), Vertical(id="passage-text"):
                if not paragraphs:
                    yield Static("(the passage text was not saved)", classes="passage-paragraph")
                for paragraph in paragraphs:
                    with Horizontal(classes="passage-row"):
                        if start is not None:
                            yield Label(line_range(paragraph, start), classes="passage-lines")
                        yield Static(shown(paragraph.text), classes="passage-paragraph")
            yield Footer()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(str(self.citation.get("text") or ""))
        self.notify("Copied the passage")
