"""Which sessions an app has open right now, across processes.

One lock (models/filelock.py) per open session beside the sessions database
(`sessions.db.open/ID.lock`): a second app on the same data folder sees the session is
taken, and an app that crashed holds nothing. Where locks cannot be taken (no flock, a
read-only folder), every claim succeeds: the check warns, it never blocks.
"""

from __future__ import annotations

from pathlib import Path

from models import filelock


class SessionClaims:
    def __init__(self, database: Path):
        self.folder = database.with_name(database.name + ".open")
        self._held: dict[str, int] = {}  # session id -> the open lock file

    def claim(self, session_id: str) -> bool:
        """Hold `session_id` for this app; False if another app holds it."""
        if session_id in self._held or not filelock.AVAILABLE:
            return True
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            fd = filelock.try_hold(self._lock(session_id), mode=0o600)
        except OSError:
            return True  # cannot tell: say nothing
        if fd is None:
            return False
        self._held[session_id] = fd
        return True

    def release(self, keep: str | None = None) -> None:
        """Let go of every session held but `keep`."""
        for session_id in [s for s in self._held if s != keep]:
            filelock.let_go(self._lock(session_id), self._held.pop(session_id))

    def _lock(self, session_id: str) -> Path:
        return self.folder / f"{session_id}.lock"
