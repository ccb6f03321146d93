"""Conversations, attached files, summaries and a small cache in one SQLite file.

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

Message `meta` is free-form JSON. Keys this module understands (in `export_markdown`):

- `citations`: a list of `{"number": 3, "label": "report.pdf:12-30", "text": "the
  quoted passage"}`. `number` is the passage number the answer cites as [3] (default:
  the position in the list); instead of `label`, `name` (or `path`) with optional
  `start_line`/`end_line` build one; `text` is optional.
- anything else (`stats`, `finish`, ...) is stored and returned as is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.errors import XGenError

ROLES = ("user", "assistant", "system", "summary")
TITLE_LENGTH = 60
BUSY_TIMEOUT_MS = 5000
SHORT_ID = 8  # characters of a session id shown in lists

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
]


@dataclass(frozen=True)
class Session:
    id: str
    title: str
    model: str
    engine: str
    created_at: str
    updated_at: str
    message_count: int = 0
    model_ref: str = ""  # the model's file, folder or URL, to reopen the session with it

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]


@dataclass(frozen=True)
class Message:
    id: int
    session_id: str
    role: str
    content: str
    created_at: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def citations(self) -> list[dict[str, Any]]:
        return list(self.meta.get("citations") or [])


@dataclass(frozen=True)
class AttachedFile:
    id: int
    session_id: str
    path: str
    name: str
    sha256: str
    n_tokens: int
    added_at: str


@dataclass(frozen=True)
class Summary:
    id: int
    session_id: str | None
    source_path: str
    sha256: str
    form: str
    text: str
    created_at: str


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a fixed width, so text order is time order."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def title_from(content: str, limit: int = TITLE_LENGTH) -> str:
    """One line of at most `limit` characters, cut at a word when it can be."""
    text = " ".join(content.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


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


_SESSION_COLUMNS = ("s.id, s.title, s.model, s.engine, s.created_at, s.updated_at, "
                    "(SELECT count(*) FROM messages m WHERE m.session_id = s.id), s.model_ref")
_MESSAGE_COLUMNS = "id, session_id, role, content, created_at, meta"
_FILE_COLUMNS = "id, session_id, path, name, sha256, n_tokens, added_at"
_SUMMARY_COLUMNS = "id, session_id, source_path, sha256, form, text, created_at"
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


def _message(row: tuple) -> Message:
    return Message(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]) if row[5] else {})


class Store:
    """The session store. One connection, usable from several threads (calls are serialized).

    Methods taking `id_or_prefix` accept any unique prefix of a session id (like git);
    the others take a full session id.
    """

    def __init__(self, path: Path | str | None = None, *, clock: Callable[[], datetime] | None = None):
        if path is None:
            from models.paths import data_dir

            path = data_dir() / "sessions.db"
        self.path = Path(path)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.RLock()
        self._db = self._connect()
        try:
            self._migrate()
        except sqlite3.OperationalError as exc:
            self._db.close()
            raise self._operational(exc) from None
        except BaseException:
            self._db.close()
            raise

    # -- connection, transactions, migrations -------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise XGenError(f"{self.path.parent}: no such folder for the sessions database")
        if not self.path.exists():
            # Conversations are private: only the user may read them (SQLite gives the
            # -wal and -shm files the same mode as the database).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error as exc:
            raise XGenError(f"cannot open the sessions database {self.path}: {exc}") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = _retry_while_locked(lambda: db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise XGenError(f"{self.path}: SQLite could not use WAL mode (got {mode}); "
                                "is it on a network drive?")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")
        except sqlite3.OperationalError as exc:
            db.close()
            raise self._operational(exc) from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise XGenError(f"{self.path} is not a usable sessions database: {exc}") from None
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, committed (durably) before the block's caller returns."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._operational(exc) from None
            try:
                yield self._db
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._operational(exc) from None
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
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _operational(self, exc: sqlite3.OperationalError) -> Exception:
        if any(hint in str(exc).lower() for hint in _OPERATIONAL_HINTS):
            return XGenError(f"sessions database {self.path}: {exc}")
        return exc

    def _user_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise XGenError(f"{self.path} was written by a newer xgen-local (schema version {version}, "
                            f"this one knows up to {len(MIGRATIONS)}); upgrade xgen-local to open it")

    def _migrate(self) -> None:
        version = _retry_while_locked(self._user_version)
        self._check_version(version)
        while version < len(MIGRATIONS):
            with self._write() as db:
                # Re-read inside the transaction: another process may have just migrated.
                version = self._user_version()
                self._check_version(version)
                if version == len(MIGRATIONS):
                    return
                step = MIGRATIONS[version]
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

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _now(self) -> str:
        return iso_utc(self._clock())

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, title: str = "", model: str = "", engine: str = "", model_ref: str = "") -> Session:
        now = self._now()
        session_id = uuid.uuid4().hex
        with self._write() as db:
            db.execute("INSERT INTO sessions (id, title, model, engine, created_at, updated_at, model_ref) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (session_id, title_from(title), model, engine, now, now, model_ref))
        return Session(session_id, title_from(title), model, engine, now, now, 0, model_ref)

    def get_session(self, id_or_prefix: str) -> Session:
        """The session whose id is, or starts with, `id_or_prefix`; unknown or ambiguous is an error."""
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise XGenError("give a session id (see `xgen sessions list`)")
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE substr(s.id, 1, ?) = ? "
                "ORDER BY s.id = ? DESC, s.id LIMIT 6",
                (len(prefix), prefix, prefix)).fetchall()
        if not rows:
            raise XGenError(f"no session {id_or_prefix.strip()!r} (see `xgen sessions list`)")
        if len(rows) > 1 and rows[0][0] != prefix:
            shown = ", ".join(row[0][: max(SHORT_ID, len(prefix) + 2)] for row in rows[:5])
            more = ", ..." if len(rows) > 5 else ""
            raise XGenError(f"session id {prefix!r} is ambiguous: {shown}{more}; give more characters")
        return Session(*rows[0])

    def list_sessions(self, limit: int = 50) -> list[Session]:
        """The most recently updated sessions first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions s "
                                    "ORDER BY s.updated_at DESC, s.rowid DESC LIMIT ?", (limit,)).fetchall()
        return [Session(*row) for row in rows]

    def rename_session(self, id_or_prefix: str, title: str) -> Session:
        session = self.get_session(id_or_prefix)
        with self._write() as db:
            db.execute("UPDATE sessions SET title = ?, updated_at = ? WHERE id = ?",
                       (title_from(title), self._now(), session.id))
        return self.get_session(session.id)

    def delete_session(self, id_or_prefix: str) -> Session:
        """Delete a session with its messages, files and summaries; returns what was deleted."""
        session = self.get_session(id_or_prefix)
        with self._write() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (session.id,))
        self._flush_wal()
        return session

    def _flush_wal(self) -> None:
        # Best effort: move the (zeroed) pages into the database and empty the WAL, so the
        # deleted text does not linger in sessions.db-wal. Skipped if a reader is busy.
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError:
                pass

    # -- messages -----------------------------------------------------------------------

    def add_message(self, session_id: str, role: str, content: str,
                    meta: dict[str, Any] | None = None) -> Message:
        """Append a message (committed on return). The first user message titles an untitled session."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        meta_json = json.dumps(meta, ensure_ascii=False) if meta else None
        with self._write() as db:
            now = self._now()
            self._require_session(db, session_id)
            cursor = db.execute("INSERT INTO messages (session_id, role, content, created_at, meta) "
                                "VALUES (?, ?, ?, ?, ?)", (session_id, role, content, now, meta_json))
            message_id = cursor.lastrowid
            db.execute("UPDATE sessions SET updated_at = max(updated_at, ?), "
                       "title = CASE WHEN title = '' AND ? = 'user' THEN ? ELSE title END WHERE id = ?",
                       (now, role, title_from(content), session_id))
        return Message(message_id, session_id, role, content, now, dict(meta or {}))

    def update_message(self, message_id: int, content: str, meta: dict[str, Any] | None = None) -> Message:
        """Replace a message's content (and meta, unless None): a streamed reply saved as it grows."""
        with self._write() as db:
            now = self._now()
            row = db.execute("SELECT session_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise XGenError(f"no message {message_id}")
            if meta is None:
                db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            else:
                db.execute("UPDATE messages SET content = ?, meta = ? WHERE id = ?",
                           (content, json.dumps(meta, ensure_ascii=False) if meta else None, message_id))
            db.execute("UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?", (now, row[0]))
            updated = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(updated)

    def messages(self, session_id: str) -> list[Message]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY id",
                                    (session_id,)).fetchall()
        return [_message(row) for row in rows]

    def _require_session(self, db: sqlite3.Connection, session_id: str) -> None:
        if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise XGenError(f"no session {session_id!r}; it may have been deleted")

    # -- attached files and summaries ---------------------------------------------------

    def attach_file(self, session_id: str, path: str | Path, name: str, sha256: str,
                    n_tokens: int, content: str | None = None) -> AttachedFile:
        """Record a file attached to a session; attaching the same file again returns the first record.
        `content` keeps the text of a file that cannot be read again (standard input)."""
        with self._write() as db:
            now = self._now()
            self._require_session(db, session_id)
            cursor = db.execute(
                "INSERT INTO files (session_id, path, name, sha256, n_tokens, added_at, content) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, sha256, path) DO NOTHING",
                (session_id, str(path), name, sha256, int(n_tokens), now, content))
            if cursor.rowcount:
                db.execute("UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?", (now, session_id))
            row = db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE session_id = ? AND sha256 = ? AND path = ?",
                             (session_id, sha256, str(path))).fetchone()
        return AttachedFile(*row)

    def files(self, session_id: str) -> list[AttachedFile]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE session_id = ? ORDER BY id",
                                    (session_id,)).fetchall()
        return [AttachedFile(*row) for row in rows]

    def file_content(self, file_id: int) -> str | None:
        """The kept text of an attached file (standard input), or None."""
        with self._lock:
            row = self._db.execute("SELECT content FROM files WHERE id = ?", (file_id,)).fetchone()
        return row[0] if row else None

    def update_file(self, file_id: int, sha256: str, n_tokens: int) -> None:
        """A file that changed since it was attached: record what it is now."""
        with self._write() as db:
            db.execute("UPDATE files SET sha256 = ?, n_tokens = ? WHERE id = ?", (sha256, int(n_tokens), file_id))

    def detach_file(self, session_id: str, path: str | Path) -> int:
        """Remove a file from a session (every version of it); returns how many records went."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM files WHERE session_id = ? AND path = ?", (session_id, str(path)))
            if cursor.rowcount:
                db.execute("UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?",
                           (self._now(), session_id))
        return cursor.rowcount

    def add_summary(self, session_id: str | None, source_path: str | Path, sha256: str, form: str,
                    text: str) -> Summary:
        """Keep a finished summary of a file; `session_id` None for one made outside a session."""
        now = self._now()
        with self._write() as db:
            if session_id is not None:
                self._require_session(db, session_id)
            cursor = db.execute(
                "INSERT INTO summaries (session_id, source_path, sha256, form, text, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (session_id, str(source_path), sha256, form, text, now))
        return Summary(cursor.lastrowid, session_id, str(source_path), sha256, form, text, now)

    def summaries(self, session_id: str | None = None, *, sha256: str | None = None,
                  form: str | None = None) -> list[Summary]:
        """Summaries, oldest first; each filter given narrows the list (none given: all)."""
        clauses, params = [], []
        for column, value in (("session_id", session_id), ("sha256", sha256), ("form", form)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(f"SELECT {_SUMMARY_COLUMNS} FROM summaries {where} ORDER BY id",
                                    params).fetchall()
        return [Summary(*row) for row in rows]

    # -- cache ----------------------------------------------------------------------------

    def cache_get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def cache_put(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO cache (key, value, created_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                       (key, value, self._now()))

    # -- export ---------------------------------------------------------------------------

    def export_markdown(self, session_id: str) -> str:
        """The session as Markdown: a header, the attached files, then one section per message."""
        with self._read():
            session = self.get_session(session_id)
            files = self.files(session.id)
            messages = self.messages(session.id)
        return render_markdown(session, files, messages)


def _when(stamp: str) -> str:
    return parse_time(stamp).strftime("%Y-%m-%d %H:%M UTC")


def citation_label(citation: dict[str, Any]) -> str:
    """Its `label`, or `name:12-30` (`name:12`, or `name` without line numbers)."""
    if citation.get("label"):
        return str(citation["label"])
    name = str(citation.get("name") or Path(str(citation.get("path") or "?")).name)
    start, end = citation.get("start_line"), citation.get("end_line")
    if start is None:
        return name
    if end is None or end == start:
        return f"{name}:{start}"
    return f"{name}:{start}-{end}"


def render_markdown(session: Session, files: list[AttachedFile], messages: list[Message]) -> str:
    lines = [f"# {session.title or 'Untitled session'}", ""]
    model = session.model or "unknown model"
    if session.engine:
        model += f" ({session.engine})"
    lines += [f"- Session: `{session.id}`", f"- Model: {model}",
              f"- Created: {_when(session.created_at)}", f"- Updated: {_when(session.updated_at)}", ""]
    if files:
        lines += ["## Attached files", ""]
        for f in files:
            lines.append(f"- {f.name} (`{f.path}`, {f.n_tokens:,} tokens, sha256 `{f.sha256[:12]}`)")
        lines.append("")
    for message in messages:
        lines += [f"## {message.role.capitalize()}", "", message.content.strip(), ""]
        citations = message.citations
        if citations:
            lines += ["Sources:", ""]
            for position, citation in enumerate(citations, 1):
                lines += [f"[{citation.get('number') or position}] {citation_label(citation)}", ""]
                quote = str(citation.get("text") or "").strip()
                if quote:
                    lines += [f"> {line}".rstrip() for line in quote.splitlines()] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"
