"""File names as the index keeps them: the bytes the OS gave, never a lossy decoding.

A name that is not valid UTF-8 (a Latin-1 name from an old archive) is stored as its bytes
(`os.fsencode` of the surrogate-escaped str Python gives) and shown with its odd bytes
spelled out (`caf\\xe9.txt`), so it can be printed, searched and cited without an error.
"""

from __future__ import annotations

import os

from assistant.safetext import shown_name

SEP = b"/"


def key(path: str | bytes | os.PathLike) -> bytes:
    """The stored form of an absolute path."""
    return os.fsencode(path)


def as_str(path: bytes) -> str:
    """The path for the OS and for JSON (surrogate-escaped: `os.fsencode` gives the bytes back)."""
    return os.fsdecode(path)


shown = shown_name  # the path for a person: odd bytes as `\\xNN`, never an encoding error


def under(root: bytes) -> tuple[bytes, bytes]:
    """[low, high) bounds of the keys strictly under folder `root`: `root/` <= key < `root0`
    ("0" follows "/" in byte order), an index range scan."""
    base = root.rstrip(SEP)
    return base + SEP, base + b"0"


def is_within(path: bytes, root: bytes) -> bool:
    """Whether path is root itself or under it."""
    base = root.rstrip(SEP)
    return path == base or path.startswith(base + SEP)
