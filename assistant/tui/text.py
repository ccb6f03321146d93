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


def full_stop(text: str) -> str:
    """`text` ending as a sentence: no stop added after "?", "!" or "." (no "running?.")."""
    return text if text.endswith((".", "?", "!")) else text + "."


def sentence(text: str) -> str:
    """`text` (a note or an error, lower case first) as a sentence of its own."""
    return full_stop(text[0].upper() + text[1:])


def plural(n: int, word: str, count: str | None = None) -> str:
    """"1 file", "3 files"; `count` writes the number another way ("3.0k")."""
    return f"{count or n} {word}{'' if n == 1 else 's'}"
