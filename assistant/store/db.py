"""The sessions database: opening the SQLite file, transactions, schema migrations.

The store lives at `data_dir() / "sessions.db"` (mode 0600) and never anywhere else.
It is safe to share between processes (a TUI and `xgen sessions` at the same time):

- WAL journal, so readers never block the writer and the writer never blocks readers;
- `busy_timeout`, so a second writer waits its turn instead of failing;
- every write is its own short `BEGIN IMMEDIATE ... COMMIT`, committed before the
  method returns, with `synchronous=FULL`: once `add_message` returns, the message
  survives the process being killed (and, with FULL, a power cut);
- `secure_delete`, so a deleted conversation is overwritten, not just unlinked.

The schema is a list of numbered migrations (`MIGRATIONS`), applied in order, each
in its own transaction, and tracked in `PRAGMA user_version`. A database written by a
newer xgen-local (a higher version than this code knows) is refused with a clear error
rather than misread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from models.errors import XGenError

BUSY_TIMEOUT_MS = 5000


class StoreBusy(XGenError):
    """Another process holds the database's write lock (beyond the wait asked for)."""

# Each entry moves the schema from version i to i + 1. Append, never edit: a database
# in the wild may be at any earlier version. An entry is an SQL script or a function
# taking the connection (called inside the migration's transaction).
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        engine TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX sessions_by_update ON sessions (updated_at);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'summary')),
        content TEXT NOT NULL,
        created_at TEXT NOT NULL,
        meta TEXT
    );
    CREATE INDEX messages_by_session ON messages (session_id, id);
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        n_tokens INTEGER NOT NULL DEFAULT 0,
        added_at TEXT NOT NULL,
        UNIQUE (session_id, sha256, path)
    );
    CREATE TABLE summaries (
        id INTEGER PRIMARY KEY,
        session_id TEXT REFERENCES sessions (id) ON DELETE CASCADE,
        source_path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        form TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX summaries_by_session ON summaries (session_id);
    CREATE INDEX summaries_by_source ON summaries (sha256, form);
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 2: the model file a session used (to reopen it with that model), and the text of
    # files read from standard input (a session started from a pipe can continue).
    """
    ALTER TABLE sessions ADD COLUMN model_ref TEXT NOT NULL DEFAULT '';
    ALTER TABLE files ADD COLUMN content TEXT;
    """,
    # 3: cached partial summaries know the document they came from (deleting a session
    # deletes them) and when they were last used (the cache is bounded, oldest out first).
    # Entries keyed on a model's display name are dropped: the keys now name the file.
    """
    DELETE FROM cache;
    ALTER TABLE cache ADD COLUMN source TEXT;
    ALTER TABLE cache ADD COLUMN used_at TEXT NOT NULL DEFAULT '';
    CREATE INDEX cache_by_source ON cache (source);
    CREATE INDEX cache_by_use ON cache (used_at);
    """,
    # 4: a cached partial summary names its document by content hash only (a streamed file
    # was named by its path). The summaries' prompts changed with it (PROMPT_VERSION 2), so
    # no entry written before can be read again: they go, and none is left tagged by path.
    """
    DELETE FROM cache WHERE key LIKE 'summary-part:%';
    """,
    # 5: a session may ask about folders as well as files (`kind` 'folder'; their passages
    # come from the library index, which keeps them current, so no sha256 is kept: '').
    """
    ALTER TABLE files ADD COLUMN kind TEXT NOT NULL DEFAULT 'file';
    """,
]


def split_sql(script: str) -> list[str]:
    """The statements of an SQL script (semicolons inside strings or comments are safe)."""
    statements, buffer = [], ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement: {buffer.strip()[:60]!r}")
    return statements


_OPERATIONAL_HINTS = ("locked", "busy", "full", "readonly", "read-only", "disk i/o", "unable to open")


def _retry_while_locked(step: Callable[[], Any], timeout: float = BUSY_TIMEOUT_MS / 1000) -> Any:
    """Run `step`, retrying while the database is locked, for up to `timeout` seconds.

    Switching a database to WAL returns "database is locked" at once, without calling
    the busy handler, when another process is switching it at the same moment (two
    xgen processes starting on a new sessions.db).
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _disk_full(folder: Path, below: int = 1 << 20) -> bool:
    """Whether the file system holding `folder` has less than `below` bytes free for us."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < below


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 0))
    except (OSError, AttributeError):
        return False


class Database:
    """One SQLite connection, usable from several threads (calls are serialized), with the
    pragmas, transactions and migrations above (see the module docstring).

    A subclass may hold another database (the library index does): it names it in
    `what`, gives its own `migrations()` and may relax `synchronous`."""

    what = "sessions database"
    synchronous = "FULL"

    def migrations(self) -> list[str | Callable[[sqlite3.Connection], None]]:
        return MIGRATIONS

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._read_only_reason: str | None = None  # why writes are refused (the disk is full)
        try:
            self._db = self._connect()
        except XGenError:
            if not _disk_full(self.path.parent):
                raise
            self._db = self._connect_for_reading_on_a_full_disk()
        try:
            self._migrate()
        except sqlite3.OperationalError as exc:
            self._db.close()
            raise self._operational(exc) from None
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self.damaged(str(exc)) from None
        except BaseException:
            self._db.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise XGenError(f"{self.path.parent}: no such folder for the {self.what}")
        if not self.path.exists():
            # Conversations are private: only the user may read them (SQLite gives the
            # -wal and -shm files the same mode as the database).
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise XGenError(f"cannot create the {self.what} {self.path}: "
                                f"{exc.strerror or exc}") from None
        elif not self.path.is_file():
            raise XGenError(f"{self.path} is not a file; move it aside so a new {self.what} can be made")
        elif _read_only_mount(self.path.parent):
            # SQLite would only say "unable to open database file" (WAL needs its -shm file).
            raise XGenError(f"cannot open the {self.what} {self.path}: its folder is on a read-only "
                            "file system; point XGEN_HOME at a writable folder")
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error as exc:
            raise XGenError(f"cannot open the {self.what} {self.path}: {exc}") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Before anything writes (even the switch to WAL): never write into a damaged file.
            self._check_intact(db)
            mode = _retry_while_locked(lambda: db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise XGenError(f"{self.path}: SQLite could not use WAL mode (got {mode}); "
                                "is it on a network drive?")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")
        except sqlite3.OperationalError as exc:
            db.close()
            raise self._operational(exc) from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self.damaged(str(exc)) from None
        except BaseException:
            db.close()
            raise
        return db

    def _connect_for_reading_on_a_full_disk(self) -> sqlite3.Connection:
        """A full disk: SQLite cannot make the shared-memory file WAL readers need, so every
        command failed with "disk I/O error", reading ones too. The file is read as it is
        on disk (immutable), which is complete when no WAL holds newer pages; writes are
        refused with the reason."""
        full = f"the disk holding {self.path.parent} is full"
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists() and wal.stat().st_size:
            raise XGenError(f"cannot open the {self.what} {self.path}: {full}, and its latest changes "
                            f"(in {wal.name}) cannot be read without writing; free some space")
        try:
            db = sqlite3.connect(self.path.resolve().as_uri() + "?immutable=1", uri=True,
                                 isolation_level=None, check_same_thread=False)
            self._check_intact(db)
        except sqlite3.Error as exc:
            raise XGenError(f"cannot open the {self.what} {self.path}: {full} ({exc}); free some space") from None
        self._read_only_reason = f"{full}; free some space (what is saved can still be read)"
        return db

    def _check_intact(self, db: sqlite3.Connection) -> None:
        """`PRAGMA quick_check` (every page's structure, not index contents; fast): a
        damaged file is refused before anything is written into it."""
        rows = _retry_while_locked(lambda: db.execute("PRAGMA quick_check(1)").fetchall())
        if rows != [("ok",)]:
            raise sqlite3.DatabaseError(" ".join(str(rows[0][0]).split()) if rows else "quick_check failed")

    def damaged(self, detail: str) -> XGenError:
        """The one-line error for a damaged database: what happened and how to recover."""
        p = self.path
        what = f"is not a usable {self.what}" if "not a database" in detail else "is damaged"
        return XGenError(f"the {self.what} {p} {what} ({detail}); nothing was written to it. "
                         f"Move it aside to start afresh (mv {p} {p}.damaged), and recover what it holds "
                         f"with: sqlite3 {p}.damaged .recover | sqlite3 {p}")

    @contextmanager
    def _write(self, *, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """One short write transaction, committed (durably) before the block's caller returns.

        Another process holding the write lock is waited for up to the busy timeout, or
        not at all if `wait` is False; StoreBusy if it still holds it. Inside another write
        of this store (on this thread: the lock is reentrant) it joins that transaction."""
        with self._lock:
            if self._read_only_reason:
                raise XGenError(f"cannot save to the {self.what}: {self._read_only_reason}")
            if self._db.in_transaction:
                yield self._db
                return
            try:
                if not wait:
                    self._db.execute("PRAGMA busy_timeout = 0")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                finally:
                    if not wait:
                        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreBusy(f"the {self.what} {self.path} is busy: another program is writing "
                                    "to it") from None
                raise self._operational(exc) from None
            try:
                yield self._db
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._operational(exc) from None
                if type(exc) is sqlite3.DatabaseError:  # damage found after opening
                    raise self.damaged(str(exc)) from None
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._operational(exc) from None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for reads that take more than one statement."""
        with self._reading() as db:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads. Text that is not UTF-8 is damage quick_check cannot see
        (it checks pages, not what they hold): it is reported as damage, with the way to
        recover, instead of sqlite3's "Could not decode to UTF-8" out of every reader."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.OperationalError as exc:
                if "decode to UTF-8" in str(exc):
                    raise self.damaged("a stored text is not valid UTF-8") from None
                raise self._operational(exc) from None

    def _operational(self, exc: sqlite3.OperationalError) -> Exception:
        if any(hint in str(exc).lower() for hint in _OPERATIONAL_HINTS):
            return XGenError(f"{self.what} {self.path}: {exc}")
        return exc

    def _user_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _check_version(self, version: int) -> None:
        if version > len(self.migrations()):
            raise XGenError(f"{self.path} was written by a newer xgen-local (schema version {version}, "
                            f"this one knows up to {len(self.migrations())}); upgrade xgen-local to open it")

    def _migrate(self) -> None:
        version = _retry_while_locked(self._user_version)
        self._check_version(version)
        migrations = self.migrations()
        while version < len(migrations):
            with self._write() as db:
                # Re-read inside the transaction: another process may have just migrated.
                version = self._user_version()
                self._check_version(version)
                if version == len(migrations):
                    return
                step = migrations[version]
                if callable(step):
                    step(db)
                else:
                    for statement in split_sql(step):
                        db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._user_version()

    def close(self) -> None:
        with self._lock:
            self._db.close()
