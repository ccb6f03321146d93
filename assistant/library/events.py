"""What an indexing job reports while it runs, and its outcome.

The job (assistant/library/job.py) calls `on_event(event)` with these; a face prints them
(the command line on stderr, the app in its sidebar). Paths are given as the index keeps
them (bytes); `names.shown` makes them printable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.library import names


@dataclass(frozen=True)
class Scanning:
    """The walk (a stat per file) is under way: `files` regular files seen so far."""

    root: bytes
    files: int


@dataclass(frozen=True)
class Progress:
    """Files being read: done out of the total (files and bytes), since `elapsed` seconds;
    `current` is the file just handed to a reader."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    elapsed: float
    current: bytes


@dataclass(frozen=True)
class Skipped:
    path: bytes
    why: str


@dataclass
class IndexReport:
    """The outcome of one `update_library` run. `files`, `passages` and `bytes` are the
    totals of the libraries named, after the run; `stopped` when it was interrupted (what
    was committed is kept, the same command continues)."""

    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0
    passages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    stopped: bool = False

    def as_json(self) -> dict:
        return {"indexed": self.indexed, "unchanged": self.unchanged, "removed": self.removed,
                "skipped": [{"path": names.as_str(s.path), "why": s.why} for s in self.skipped],
                "files": self.files, "passages": self.passages, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Done:
    report: IndexReport


Event = Scanning | Progress | Skipped | Done
