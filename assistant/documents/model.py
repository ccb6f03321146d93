"""The loaded document: its text, where it came from, and where a span of it is.

A :class:`Document` holds the extracted text plus what is needed to point back into
the original (line numbers, PDF pages) for citations.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    """A loaded document: its text and where it came from.

    ``pages`` (PDFs only) holds the character offset in ``text`` where each page starts,
    so ``pages[0] == 0`` and a character offset maps to a page with a bisection.
    """

    source: str  # the path as given, or "<stdin>"
    name: str  # the file name, for display
    kind: str  # one of KINDS
    text: str
    sha256: str  # of the raw bytes
    pages: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()  # what the reader could not take in (pages that failed, ...)

    def __repr__(self) -> str:  # the text can be megabytes: never print it whole
        extra = f", pages={len(self.pages)}" if self.pages else ""
        return (
            f"Document(source={self.source!r}, kind={self.kind!r}, "
            f"chars={len(self.text)}{extra}, sha256={self.sha256[:12]!r})"
        )

    @functools.cached_property
    def _newlines(self) -> list[int]:
        # Offsets of every "\n", computed once; line_of is then a bisection.
        return [m.start() for m in re.finditer("\n", self.text)]

    @property
    def n_lines(self) -> int:
        return len(self._newlines) + (0 if self.text.endswith("\n") or not self.text else 1)

    def line_of(self, offset: int) -> int:
        """1-based line of the character at offset (a "\\n" belongs to the line it ends)."""
        offset = min(max(offset, 0), len(self.text))
        return bisect.bisect_left(self._newlines, offset) + 1

    def page_of(self, offset: int) -> int:
        """1-based page of the character at offset (1 for documents without pages)."""
        if not self.pages:
            return 1
        offset = min(max(offset, 0), len(self.text))
        # bisect_right: an empty page shares its start with the next one; the later wins.
        return max(bisect.bisect_right(self.pages, offset), 1)

    def _trimmed(self, start: int, end: int) -> tuple[int, int]:
        """[start, end) without leading/trailing whitespace (unchanged if all whitespace)."""
        start = max(start, 0)
        end = min(end, len(self.text))
        text = self.text
        a, b = start, end
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        return (a, b) if a < b else (start, end)

    def span_lines(self, start: int, end: int) -> tuple[int, int]:
        """First and last line of the text in [start, end), ignoring blank lines around it."""
        a, b = self._trimmed(start, end)
        return self.line_of(a), self.line_of(max(b - 1, a))

    def span_pages(self, start: int, end: int) -> tuple[int, int]:
        a, b = self._trimmed(start, end)
        return self.page_of(a), self.page_of(max(b - 1, a))

    def location(self, start: int, end: int) -> str:
        """Where [start, end) is, for citations: "name:12-30" (lines, "name:7-7" for one)
        or, for PDFs, "name p.3-4" / "name p.3". Blank lines around the span don't count."""
        if self.pages:
            first, last = self.span_pages(start, end)
            return f"{self.name} p.{first}" if first == last else f"{self.name} p.{first}-{last}"
        first, last = self.span_lines(start, end)
        return f"{self.name}:{first}-{last}"
