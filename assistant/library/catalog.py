"""The libraries the index holds: their roots, totals, listing and forgetting.

A library is a root given to `xgen index` (a folder or one file) with the options it was
indexed with. A file is in every library whose root it is under; overlapping roots share
their files (one row each), so nothing is stored twice.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from assistant.library import names
from assistant.library.schema import IndexDatabase
from models.errors import XGenError


@dataclass(frozen=True)
class Root:
    path: bytes
    hidden: bool
    no_ignore: bool
    updated_at: float | None


@dataclass(frozen=True)
class LibraryInfo:
    """One line of `xgen library list`: `bytes` of the indexed files on disk."""

    path: bytes
    files: int
    passages: int
    bytes: int
    skipped: int
    updated_at: float | None

    def as_json(self) -> dict:
        return {"path": names.as_str(self.path), "files": self.files, "passages": self.passages,
                "bytes": self.bytes, "skipped": self.skipped, "updated_at": self.updated_at}


def resolve(path: str | bytes | os.PathLike) -> bytes:
    """The absolute, resolved form of a path the user gave (it must exist)."""
    raw = os.fsencode(os.path.expanduser(os.fspath(path)))
    real = os.path.realpath(os.path.abspath(raw))
    try:
        os.stat(real)
    except FileNotFoundError:
        raise XGenError(f"No such file or folder: {names.shown(raw)}") from None
    except OSError as exc:
        raise XGenError(f"Cannot read {names.shown(raw)}: {exc.strerror or exc}") from None
    return real


def where(path: bytes) -> tuple[str, tuple]:
    """SQL condition (on `files.path`) and parameters for `path` itself or anything under it."""
    low, high = names.under(path)
    return "(files.path = ? OR (files.path >= ? AND files.path < ?))", (path, low, high)


def roots(db: IndexDatabase) -> list[Root]:
    return [Root(bytes(p), bool(h), bool(n), u) for p, h, n, u in
            db.query("SELECT path, hidden, no_ignore, updated_at FROM roots ORDER BY path")]


def root_of(db: IndexDatabase, path: bytes) -> Root | None:
    """The library `path` belongs to (the deepest root it is in), if any."""
    inside = [r for r in roots(db) if names.is_within(path, r.path)]
    return max(inside, key=lambda r: len(r.path)) if inside else None


def register(db: IndexDatabase, path: bytes, hidden: bool, no_ignore: bool) -> None:
    with db.write() as c:
        c.execute("INSERT INTO roots (path, hidden, no_ignore, created_at) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (path) DO UPDATE SET hidden = excluded.hidden, no_ignore = excluded.no_ignore",
                  (path, int(hidden), int(no_ignore), time.time()))


def mark_updated(db: IndexDatabase, path: bytes) -> None:
    with db.write() as c:
        c.execute("UPDATE roots SET updated_at = ? WHERE path = ?", (time.time(), path))


def totals(db: IndexDatabase, paths: list[bytes]) -> tuple[int, int, int, int]:
    """(indexed files, passages, bytes of the indexed files, skipped) under any of `paths`."""
    if not paths:
        return 0, 0, 0, 0
    conditions, params = zip(*(where(p) for p in paths))
    sql = ("SELECT count(*) FILTER (WHERE status = 'indexed'), "
           "coalesce(sum(n_passages), 0), coalesce(sum(size) FILTER (WHERE status = 'indexed'), 0), "
           "count(*) FILTER (WHERE status = 'skipped') FROM files WHERE " + " OR ".join(conditions))
    return tuple(db.query(sql, [x for p in params for x in p])[0])  # type: ignore[return-value]


def list_libraries(db: IndexDatabase) -> list[LibraryInfo]:
    out = []
    for r in roots(db):
        files, passages, size, skipped = totals(db, [r.path])
        out.append(LibraryInfo(r.path, files, passages, size, skipped, r.updated_at))
    return out


def forget(db: IndexDatabase, path: str | bytes | os.PathLike) -> LibraryInfo:
    """Remove a library: its root, and its files unless another library holds them.
    The path need not exist any more (a folder deleted or moved away)."""
    raw = os.fsencode(os.path.expanduser(os.fspath(path)))
    target = os.path.realpath(os.path.abspath(raw))
    known = {r.path: r for r in roots(db)}
    if target not in known:
        target = os.path.abspath(raw)  # the folder may be gone, so realpath cannot see links
    if target not in known:
        listed = ", ".join(names.shown(p) for p in known) or "none"
        raise XGenError(f"{names.shown(raw)} is not a library (libraries: {listed}); see `xgen library list`")
    info = next(i for i in list_libraries(db) if i.path == target)
    others = [p for p in known if p != target]
    condition, params = where(target)
    with db.write() as c:
        c.execute("DELETE FROM roots WHERE path = ?", (target,))
        ids = [i for i, p in c.execute(f"SELECT id, path FROM files WHERE {condition}", params)
               if not any(names.is_within(bytes(p), o) for o in others)]
        delete_files(c, ids)
    return info


def delete_files(c, ids: list[int]) -> None:
    """Delete files and their passages (passages first: the FTS trigger needs their text)."""
    for start in range(0, len(ids), 500):
        batch = ids[start:start + 500]
        marks = ",".join("?" * len(batch))
        c.execute(f"DELETE FROM passages WHERE file_id IN ({marks})", batch)
        c.execute(f"DELETE FROM files WHERE id IN ({marks})", batch)
