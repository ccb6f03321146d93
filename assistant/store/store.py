"""Conversations, attached files, summaries and a small cache in one SQLite file.

:class:`Store` adds these records to the :class:`~assistant.store.db.Database` (connection,
transactions, migrations); `export_markdown` renders a session with
:mod:`assistant.store.export`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant.safetext import encodes_as_utf8
from assistant.store.db import Database
from assistant.store.export import render_markdown
from assistant.store.records import SHORT_ID, AttachedFile, Message, Session, Summary
from models.errors import XGenError

ROLES = ("user", "assistant", "system", "summary")
TITLE_LENGTH = 60
CACHE_MAX_ENTRIES = 20_000  # cached partial summaries: a few hundred documents' worth
CACHE_MAX_BYTES = 64 * 2**20


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a fixed width, so text order is time order."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


_SESSION_COLUMNS = ("s.id, s.title, s.model, s.engine, s.created_at, s.updated_at, "
                    "(SELECT count(*) FROM messages m WHERE m.session_id = s.id), s.model_ref")
_MESSAGE_COLUMNS = "id, session_id, role, content, created_at, meta"
_FILE_COLUMNS = "id, session_id, path, name, sha256, n_tokens, added_at, kind"
_SUMMARY_COLUMNS = "id, session_id, source_path, sha256, form, text, created_at"


def _stored_path(path: str | Path) -> str | bytes:
    """A path as the database keeps it: text, or the bytes the OS gave when they are not
    UTF-8 (a Latin-1 name arrives surrogate-escaped, which SQLite text cannot hold)."""
    text = os.fspath(path)
    return text if encodes_as_utf8(text) else os.fsencode(text)


def _loaded_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _meta_json(meta: dict | None) -> str | None:
    """A message's meta as JSON text; a file name that is not UTF-8 (surrogate-escaped) is
    kept as a \\u escape, which SQLite can hold and json.loads gives back unchanged."""
    if not meta:
        return None
    text = json.dumps(meta, ensure_ascii=False)
    return text if encodes_as_utf8(text) else json.dumps(meta)


def _attached(row) -> AttachedFile:
    return AttachedFile(row[0], row[1], _loaded_path(row[2]), *row[3:])


def _message(row: tuple) -> Message:
    return Message(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]) if row[5] else {})


class Store(Database):
    """The session store. One connection, usable from several threads (calls are serialized).

    Methods taking `id_or_prefix` accept any unique prefix of a session id (like git);
    the others take a full session id.
    """

    def __init__(self, path: Path | str | None = None, *, clock: Callable[[], datetime] | None = None):
        if path is None:
            from models.paths import data_dir

            path = data_dir() / "sessions.db"
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        super().__init__(path)

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
        with self._reading():
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

    def has_session(self, session_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is not None

    def data_version(self) -> int:
        """A number that changes when another connection (another app) commits: cheap to poll."""
        with self._lock:
            return self._db.execute("PRAGMA data_version").fetchone()[0]

    def list_sessions(self, limit: int = 50) -> list[Session]:
        """The most recently updated sessions first."""
        with self._reading():
            rows = self._db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions s "
                                    "ORDER BY s.updated_at DESC, s.rowid DESC LIMIT ?", (limit,)).fetchall()
        return [Session(*row) for row in rows]

    def rename_session(self, id_or_prefix: str, title: str) -> Session:
        session = self.get_session(id_or_prefix)
        with self._write() as db:
            db.execute("UPDATE sessions SET title = ?, updated_at = ? WHERE id = ?",
                       (title_from(title), self._now(), session.id))
        return self.get_session(session.id)

    def set_session_model(self, session_id: str, model: str, engine: str, model_ref: str) -> Session:
        """Record the model of a session created before one was known (files attached while
        the app was still loading it)."""
        with self._write() as db:
            db.execute("UPDATE sessions SET model = ?, engine = ?, model_ref = ? WHERE id = ?",
                       (model, engine, model_ref, session_id))
        return self.get_session(session_id)

    def delete_session(self, id_or_prefix: str) -> Session:
        """Delete a session with its messages, files, summaries, and the cached partial
        summaries of its files (unless another session has the same file); returns it."""
        session = self.get_session(id_or_prefix)
        with self._write() as db:
            db.execute("DELETE FROM cache WHERE source IN (SELECT sha256 FROM files WHERE session_id = ?1) "
                       "AND source NOT IN (SELECT sha256 FROM files WHERE session_id != ?1)", (session.id,))
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
        meta_json = _meta_json(meta)
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

    def add_exchange(self, session_id: str, question: str, reply_meta: dict[str, Any]) -> tuple[Message, Message]:
        """A question and its (empty, to be streamed) reply, in one transaction: a full disk
        or a busy store never leaves a question without its reply."""
        with self._write():
            user = self.add_message(session_id, "user", question)
            reply = self.add_message(session_id, "assistant", "", meta=reply_meta)
        return user, reply

    def update_message(self, message_id: int, content: str, meta: dict[str, Any] | None = None, *,
                       wait: bool = True) -> Message:
        """Replace a message's content (and meta, unless None): a streamed reply saved as it
        grows. With `wait` False, StoreBusy at once if another process is writing."""
        with self._write(wait=wait) as db:
            now = self._now()
            row = db.execute("SELECT session_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise XGenError(f"no message {message_id}")
            if meta is None:
                db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            else:
                db.execute("UPDATE messages SET content = ?, meta = ? WHERE id = ?",
                           (content, _meta_json(meta), message_id))
            db.execute("UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?", (now, row[0]))
            updated = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(updated)

    def delete_messages(self, message_ids: list[int]) -> None:
        """Take messages back out (a question whose answer failed before its first word)."""
        with self._write() as db:
            db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in message_ids])

    def messages(self, session_id: str) -> list[Message]:
        with self._reading():
            rows = self._db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY id",
                                    (session_id,)).fetchall()
        return [_message(row) for row in rows]

    def _require_session(self, db: sqlite3.Connection, session_id: str) -> None:
        if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise XGenError(f"no session {session_id!r}; it may have been deleted")

    # -- attached files and summaries ---------------------------------------------------

    def attach_file(self, session_id: str, path: str | Path, name: str, sha256: str,
                    n_tokens: int, content: str | None = None, kind: str = "file") -> AttachedFile:
        """Record a file (or, with kind "folder", a folder) attached to a session; attaching
        the same one again returns the first record. `content` keeps the text of a file
        that cannot be read again (standard input)."""
        with self._write() as db:
            now = self._now()
            self._require_session(db, session_id)
            cursor = db.execute(
                "INSERT INTO files (session_id, path, name, sha256, n_tokens, added_at, content, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, sha256, path) DO NOTHING",
                (session_id, _stored_path(path), name, sha256, int(n_tokens), now, content, kind))
            if cursor.rowcount:
                db.execute("UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?", (now, session_id))
            row = db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE session_id = ? AND sha256 = ? AND path = ?",
                             (session_id, sha256, _stored_path(path))).fetchone()
        return _attached(row)

    def files(self, session_id: str) -> list[AttachedFile]:
        with self._reading():
            rows = self._db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE session_id = ? ORDER BY id",
                                    (session_id,)).fetchall()
        return [_attached(row) for row in rows]

    def file_content(self, file_id: int) -> str | None:
        """The kept text of an attached file (standard input), or None."""
        with self._reading():
            row = self._db.execute("SELECT content FROM files WHERE id = ?", (file_id,)).fetchone()
        return row[0] if row else None

    def update_file(self, file_id: int, sha256: str, n_tokens: int) -> None:
        """A file that changed since it was attached: record what it is now."""
        with self._write() as db:
            db.execute("UPDATE files SET sha256 = ?, n_tokens = ? WHERE id = ?", (sha256, int(n_tokens), file_id))

    def detach_file(self, session_id: str, path: str | Path) -> int:
        """Remove a file from a session (every version of it); returns how many records went."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM files WHERE session_id = ? AND path = ?",
                                (session_id, _stored_path(path)))
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
                "VALUES (?, ?, ?, ?, ?, ?)", (session_id, _stored_path(source_path), sha256, form, text, now))
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
        with self._reading():
            rows = self._db.execute(f"SELECT {_SUMMARY_COLUMNS} FROM summaries {where} ORDER BY id",
                                    params).fetchall()
        return [Summary(row[0], row[1], _loaded_path(row[2]), *row[3:]) for row in rows]

    # -- cache ----------------------------------------------------------------------------

    def cache_get(self, key: str) -> str | None:
        with self._write() as db:
            row = db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
            if row:
                db.execute("UPDATE cache SET used_at = ? WHERE key = ?", (self._now(), key))
        return row[0] if row else None

    def cache_put(self, key: str, value: str, source: str | None = None) -> None:
        """Keep `value` under `key`; `source` names the document it came from (the sha256 of
        its content), so deleting the sessions that use it deletes it. Oldest-used entries go first
        beyond CACHE_MAX_ENTRIES or CACHE_MAX_BYTES."""
        now = self._now()
        with self._write() as db:
            db.execute("INSERT INTO cache (key, value, created_at, source, used_at) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at, "
                       "source = excluded.source, used_at = excluded.used_at", (key, value, now, source, now))
            count, size = db.execute("SELECT count(*), coalesce(sum(length(value)), 0) FROM cache").fetchone()
            while count > CACHE_MAX_ENTRIES or size > CACHE_MAX_BYTES:
                oldest = db.execute("SELECT key, length(value) FROM cache ORDER BY used_at, rowid LIMIT 1").fetchone()
                db.execute("DELETE FROM cache WHERE key = ?", (oldest[0],))
                count, size = count - 1, size - oldest[1]

    def cache_info(self) -> tuple[int, int]:
        """(entries, characters) in the cache."""
        with self._reading():
            count, size = self._db.execute("SELECT count(*), coalesce(sum(length(value)), 0) FROM cache").fetchone()
        return count, size

    def cache_clear(self) -> int:
        """Empty the cache; returns how many entries went."""
        with self._write() as db:
            removed = db.execute("DELETE FROM cache").rowcount
        self._flush_wal()
        return removed

    # -- export ---------------------------------------------------------------------------

    def export_markdown(self, session_id: str) -> str:
        """The session as Markdown: a header, the attached files, then one section per message."""
        with self._read():
            session = self.get_session(session_id)
            files = self.files(session.id)
            messages = self.messages(session.id)
        return render_markdown(session, files, messages)
