"""Which sessions an app has open right now, across processes.

One lock file per open session beside the sessions database (`sessions.db.open/ID.lock`),
held with flock: a second app on the same data folder sees the session is taken, and an
app that crashed holds nothing (the kernel drops its locks), so no stale pid is guessed at.
Where locks cannot be taken (no fcntl, a read-only folder), every claim succeeds: the
check warns, it never blocks.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no claims, no warnings
    fcntl = None  # type: ignore[assignment]


class SessionClaims:
    def __init__(self, database: Path):
        self.folder = database.with_name(database.name + ".open")
        self._held: dict[str, int] = {}  # session id -> the open lock file

    def claim(self, session_id: str) -> bool:
        """Hold `session_id` for this app; False if another app holds it."""
        if session_id in self._held or fcntl is None:
            return True
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.folder / f"{session_id}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            return True  # cannot tell: say nothing
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._held[session_id] = fd
        return True

    def release(self, keep: str | None = None) -> None:
        """Let go of every session held but `keep`."""
        for session_id in [s for s in self._held if s != keep]:
            fd = self._held.pop(session_id)
            try:
                (self.folder / f"{session_id}.lock").unlink()  # before unlocking: no litter, no gap
            except OSError:
                pass  # already gone
            os.close(fd)
