"""Text from outside (a model's reply, a server's error, a file's name or contents) made
safe to show on a terminal.

A terminal obeys control characters wherever they come from: `ESC ] 52 ; c ; ... BEL`
writes the user's clipboard, `ESC ] 0 ; ... BEL` sets the window title, `ESC [ 2 J`
clears the screen, and a bare carriage return lets later text overwrite what was shown.
So everything that reaches a screen from outside the program passes through
`printable`, which drops the C0 controls but tab and newline, DEL, and the C1 controls
(which some terminals read as ESC + a letter). What remains of an escape sequence is
inert text (`]0;title`), which also shows the user that something was there.
"""

from __future__ import annotations

import os
import re

# C0 but \t (09) and \n (0a), DEL (7f), C1 (80-9f).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without the control characters a terminal would act on (tab and newline kept)."""
    return _CONTROLS.sub("", text)


def has_controls(text: str) -> bool:
    return _CONTROLS.search(text) is not None


def shown_name(name: str | bytes | os.PathLike) -> str:
    """A file name (or path) for a person and for any text the program makes of it (a
    prompt, a citation, a store record): bytes that are not UTF-8 (a Latin-1 name, which
    Python hands over surrogate-escaped) spelled `\\xNN`, never an encoding error later."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def encodes_as_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (Python hands them over
    surrogate-escaped), which UTF-8 streams, tokenizers and SQLite text cannot take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_text(text: str) -> str:
    """`text` as UTF-8 can hold it: a byte that was not UTF-8 (a question typed in a Latin-1
    terminal arrives surrogate-escaped) becomes U+FFFD, which tokenizers and SQLite take."""
    if encodes_as_utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
