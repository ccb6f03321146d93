"""Locks between processes, held through a small file (flock): who writes an output, which
app has a session open.

The kernel drops a process's locks when it dies, so a killed or crashed holder never blocks
the next one and no stale pid is guessed at. The holder removes the file while still
holding it; whoever opened that file just before gets a lock on a file nobody else can
see, so a lock counts only once it is checked to be on the file now at the path.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no flock; callers go on unlocked
    fcntl = None  # type: ignore[assignment]

AVAILABLE = fcntl is not None


def try_hold(path: Path, note: str = "", mode: int = 0o644) -> int | None:
    """Lock the file at `path` (made if missing) and write `note` into it (a pid, for a
    refusal to name): its open descriptor, or None if another process holds it. OSError
    if the file cannot be made or opened (a read-only or missing folder)."""
    assert fcntl is not None, "check AVAILABLE first"
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # its holder removed it as we opened it: lock the one on disk now
    os.ftruncate(fd, 0)
    os.pwrite(fd, note.encode(), 0)
    return fd


def note_of(path: Path) -> str:
    """What the holder of the lock at `path` wrote into it ("" if nothing or gone)."""
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def let_go(path: Path, fd: int) -> None:
    """Remove the lock file while still holding it (no litter, no gap), then release it."""
    try:
        os.unlink(path)
    except OSError:
        pass  # already gone
    os.close(fd)
