"""Text from outside (replies, file names, titles, errors, passages) as the app shows it.

Textual strips only a few control characters (BEL, BS, VT, FF, CR) from what it draws,
so an ESC inside a reply or a file name would reach the terminal as the start of an
escape sequence. Every widget that shows such text builds its content here.
"""

from __future__ import annotations

from textual.content import Content

from assistant.safetext import printable


def shown(text: str) -> Content:
    """`text` as plain (never markup) content, without terminal control characters."""
    return Content(printable(text))
