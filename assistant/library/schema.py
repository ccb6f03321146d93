"""The library index: one SQLite file, its schema (numbered migrations) and how it is opened.

The index lives at `data_dir() / "library.db"`. It is a cache of the user's folders: a
damaged one, or one written by a newer xgen-local, is refused with one line and rebuilt on
request (`xgen index --rebuild`), never repaired behind the user's back.

Tables:

- `roots`: the folders (and single files) given to `xgen index`, with the options they were
  indexed with, so `ask`/`search` can bring them up to date the same way;
- `files`: every file the walk met under a root, by absolute path stored losslessly as the
  bytes the OS gave (`os.fsencode`), with its fingerprint (size, mtime_ns, inode, sha256),
  its kind, and either `status = 'indexed'` or `'skipped'` with the reason in `why`;
- `passages`: a file's text in pieces of about PASSAGE_CHARS characters: character range,
  line range (text) or page range (PDF), text (XGen token counts are made when a passage
  is retrieved for a prompt, see extract.py);
- `passages_fts`: FTS5 over `passages.text` (external content), kept in step with
  `passages` in the same transaction, so its rows always match what was indexed (a
  `delete` with other values would corrupt it silently; see ../shared/SEARCH.md): a
  trigger deletes, and `add_passages` (the one writer of passages) inserts a file's rows
  in two `executemany` (an insert trigger fired per row cost 1.7x the CPU time of the
  bare FTS5 insert, measured in bench/RESULTS.md);
- `passages_vocab`: fts5vocab over it, for each term's passage count (how common it is).

Tokenizer: `unicode61 remove_diacritics 2`, with porter stemming (measured in
bench/bench_library.py: same insert rate and size within a few per cent, and questions
written with other word forms than the text find it; see bench/RESULTS.md).

Opening runs `PRAGMA quick_check` (the base class; on an index over 64 MB, daily) and the
FTS5 `integrity-check`, which reads the whole index (about 14 µs per passage here: 0.7 s
at 50,000 passages). On this
SQLite (3.40) it checks the FTS index's own structure; comparing it with the passages
needs 3.44 (add_passages and the trigger are what keep the two in step). A small
index is checked at every opening; a large one when it was last checked a day ago or more,
by the next process that opens it to write (`xgen index`), so that a search on a million
passages stays well under a second. Damage found later, by a query, gives the same
one-line message.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from assistant.store.db import Database
from models.errors import XGenError
from models.paths import data_dir

INDEX_NAME = "library.db"
TOKENIZE = "porter unicode61 remove_diacritics 2"
# An index up to this many passages is checked at every opening; a larger one daily.
CHECK_ALWAYS_BELOW = 20_000
CHECK_EVERY_SECONDS = 24 * 3600
# The same for SQLite's quick_check, which reads every page: 2.8 s of a 2.3 GB index
# (20,000 files, 1.5 million passages) at each opening, where a search takes 0.1 s.
QUICK_CHECK_ALWAYS_BELOW_BYTES = 64 * 2**20

# Each entry moves the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    f"""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE roots (
        id INTEGER PRIMARY KEY,
        path BLOB NOT NULL UNIQUE,
        hidden INTEGER NOT NULL DEFAULT 0,
        no_ignore INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL
    );
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        path BLOB NOT NULL UNIQUE,
        size INTEGER,
        mtime_ns INTEGER,
        inode INTEGER,
        sha256 TEXT,
        kind TEXT,
        status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')),
        why TEXT,
        n_passages INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    CREATE TABLE passages (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        start_char INTEGER NOT NULL,
        end_char INTEGER NOT NULL,
        start_line INTEGER,
        end_line INTEGER,
        start_page INTEGER,
        end_page INTEGER,
        n_tokens INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX passages_by_file ON passages (file_id, seq);
    CREATE VIRTUAL TABLE passages_fts USING fts5(
        text, content='passages', content_rowid='id', tokenize='{TOKENIZE}'
    );
    CREATE VIRTUAL TABLE passages_vocab USING fts5vocab(passages_fts, row);
    CREATE TRIGGER passages_fts_insert AFTER INSERT ON passages BEGIN
        INSERT INTO passages_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER passages_fts_delete AFTER DELETE ON passages BEGIN
        INSERT INTO passages_fts (passages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    """,
    # 2: passages are no longer counted in XGen tokens when indexed (tiktoken was ~85% of
    # the indexing time); `retrieve` counts the few a prompt may pack. `add_passages`
    # fills the FTS index per file instead of a trigger per row (1.7x faster).
    """
    ALTER TABLE passages DROP COLUMN n_tokens;
    DROP TRIGGER passages_fts_insert;
    """,
    # 3: a file's XGen tokens, counted the first time a conversation attaches it (NULL
    # until then, and again once its content changes): a 49 MB file took 6.5 s to count,
    # and a resumed session attaches its files again.
    """
    ALTER TABLE files ADD COLUMN n_tokens INTEGER;
    """,
]

PASSAGE_COLUMNS = ("seq", "start_char", "end_char", "start_line", "end_line", "start_page", "end_page", "text")
_INSERT_PASSAGES = (f"INSERT INTO passages (id, file_id, {', '.join(PASSAGE_COLUMNS)}) "
                    f"VALUES (?, ?, {', '.join('?' * len(PASSAGE_COLUMNS))})")


def add_passages(c: sqlite3.Connection, file_id: int, rows: Sequence[tuple]) -> None:
    """Insert a file's passages (tuples of PASSAGE_COLUMNS, text last) and index them, in
    the caller's write transaction (which holds the write lock: the ids taken here are
    free). The file must have no passages yet (they are deleted first on a change)."""
    first = (c.execute("SELECT max(id) FROM passages").fetchone()[0] or 0) + 1
    c.executemany(_INSERT_PASSAGES, ((first + k, file_id, *row) for k, row in enumerate(rows)))
    c.executemany("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)",
                  ((first + k, row[-1]) for k, row in enumerate(rows)))


def index_path() -> Path:
    return data_dir() / INDEX_NAME


class IndexDatabase(Database):
    """The library index (see the module docstring). Writes go through `write()`, one short
    transaction each; reads through `read()`, one snapshot."""

    what = "library index"
    # A cache: a power cut may lose the last files indexed (the next run redoes them), but
    # never corrupts it (WAL); a killed process loses nothing committed.
    synchronous = "NORMAL"

    def __init__(self, path: Path | str | None = None, *, check: bool | None = None):
        super().__init__(path if path is not None else index_path())
        try:
            if self.quick_checked:
                try:
                    with self.write() as db:
                        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('quick_checked_at', ?)",
                                   (str(time.time()),))
                except XGenError:
                    pass  # a full disk: checked again at the next opening
            self._check_fts(check)
        except XGenError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self.damaged(str(exc)) from None

    def migrations(self) -> list[str | Callable[[sqlite3.Connection], None]]:
        return MIGRATIONS

    def _check_intact(self, db: sqlite3.Connection) -> None:
        """quick_check at every opening while the index is small, then daily (see
        QUICK_CHECK_ALWAYS_BELOW_BYTES); the time of the last one is kept in `meta`."""
        self.quick_checked = False
        try:
            size = self.path.stat().st_size
            row = db.execute("SELECT value FROM meta WHERE key = 'quick_checked_at'").fetchone()
        except (OSError, sqlite3.Error):  # a new file, or one with no meta table yet
            size, row = 0, None
        if size >= QUICK_CHECK_ALWAYS_BELOW_BYTES and row is not None \
                and time.time() - float(row[0]) < CHECK_EVERY_SECONDS:
            return
        super()._check_intact(db)
        # Recorded small too: an index that grows past the bound in one `xgen index` run
        # (written by us since) is checked a day later, not by the very next command.
        self.quick_checked = True

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise XGenError(f"the library index {self.path} was written by a newer xgen-local (schema version "
                            f"{version}, this one knows up to {len(MIGRATIONS)}); it was left as it is: "
                            "`xgen index --rebuild PATH...` makes a new one")

    def damaged(self, detail: str) -> XGenError:
        return XGenError(f"the library index {self.path} is damaged ({' '.join(detail.split())}); it was left as it "
                         "is: `xgen index --rebuild PATH...` makes a new one from your files")

    def _check_fts(self, check: bool | None) -> None:
        """The FTS5 integrity-check: always (check=True), never (False), or by the policy in
        the module docstring (None)."""
        if check is False:
            return
        with self._lock:
            n = self._db.execute("SELECT max(id) FROM passages").fetchone()[0] or 0
            row = self._db.execute("SELECT value FROM meta WHERE key = 'fts_checked_at'").fetchone()
        due = n < CHECK_ALWAYS_BELOW or row is None or time.time() - float(row[0]) >= CHECK_EVERY_SECONDS
        if check is None and not due:
            return
        with self.write() as db:
            db.execute("INSERT INTO passages_fts (passages_fts) VALUES ('integrity-check')")
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('fts_checked_at', ?)", (str(time.time()),))

    def write(self):
        """One short write transaction (BEGIN IMMEDIATE ... COMMIT); see store.db."""
        return self._write()

    def read(self):
        """A consistent snapshot for reads of more than one statement."""
        return self._read()

    def query(self, sql: str, params=()) -> list[tuple]:
        """All rows of one read statement (damage found here is the one-line message)."""
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise self._operational(exc) from None
            except sqlite3.DatabaseError as exc:
                if type(exc) is sqlite3.DatabaseError:
                    raise self.damaged(str(exc)) from None
                raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection itself, for a caller that holds `lock` (search sets a time limit)."""
        return self._db

    @property
    def lock(self):
        return self._lock


def remove_index(path: Path | None = None) -> Path:
    """Delete the index file and its WAL companions (for `--rebuild`); returns its path."""
    path = path or index_path()
    for suffix in ("", "-wal", "-shm"):
        target = path.with_name(path.name + suffix)
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise XGenError(f"cannot remove the library index {target}: {exc.strerror or exc}") from None
    return path


__all__ = ["CHECK_ALWAYS_BELOW", "INDEX_NAME", "MIGRATIONS", "PASSAGE_COLUMNS", "TOKENIZE", "IndexDatabase",
           "add_passages", "index_path", "remove_index"]
