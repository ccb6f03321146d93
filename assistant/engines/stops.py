"""Stop strings: a reply ends where the model starts inventing the next turn.

The inst model sometimes runs on past its answer into "### Human: ..." of its own. The
filter sits between decoding and the caller's `on_text`: it holds back any tail of
the text that could still become a stop string (so the marker is never shown, even in
part), and reports the first complete one. Every engine streams through it.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper start of a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class StopFilter:
    def __init__(self, stops: Sequence[str], on_text: Callable[[str], None] | None):
        self.stops = tuple(s for s in stops if s)
        self.on_text = on_text
        self.text = ""
        self.shown = 0  # characters passed on to on_text
        self.cut: int | None = None  # where the first stop string starts, once found

    def feed(self, piece: str) -> bool:
        """Add decoded text; True once a stop string has appeared (nothing after it is shown)."""
        if self.cut is not None:
            return True
        self.text += piece
        found = [i for s in self.stops if (i := self.text.find(s, self.shown)) >= 0]
        if found:
            self.cut = min(found)
            self._show(self.cut)
            return True
        self._show(len(self.text) - held_back(self.text, self.stops))
        return False

    def close(self) -> str:
        """The reply: up to the stop string if one was found, else everything (held text shown)."""
        if self.cut is not None:
            return self.text[: self.cut]
        self._show(len(self.text))
        return self.text

    def _show(self, end: int) -> None:
        if end > self.shown:
            if self.on_text is not None:
                self.on_text(self.text[self.shown:end])
            self.shown = end


class ReplyDecoder:
    """Turns generated token bytes into text pieces without splitting UTF-8 characters,
    and ends the text before the first stop string (which is never shown)."""

    def __init__(self, on_text: Callable[[str], None] | None, stop_strings: Sequence[str] = ()):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._filter = StopFilter(stop_strings, on_text)

    @property
    def decoded(self) -> int:
        """Characters decoded so far."""
        return len(self._filter.text)

    @property
    def stop_at(self) -> int | None:
        """Where the first stop string starts in the decoded text, once one has appeared."""
        return self._filter.cut

    def push(self, data: bytes) -> bool:
        """Add token bytes; True once a stop string has appeared."""
        return self._filter.feed(self._decoder.decode(data))

    def close(self) -> str:
        self._filter.feed(self._decoder.decode(b"", final=True))
        return self._filter.close()
