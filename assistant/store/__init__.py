"""Conversations, attached files, summaries and a small cache in one SQLite file.

- ``db``: the SQLite connection (WAL, pragmas), transactions and schema migrations;
- ``records``: what the store returns (Session, Message, AttachedFile, Summary);
- ``store``: :class:`Store`, which keeps and finds those records;
- ``export``: a session as Markdown, with its citations;
- ``claims``: which sessions an app has open right now, across processes.
"""

from assistant.store.claims import SessionClaims
from assistant.store.db import BUSY_TIMEOUT_MS, MIGRATIONS, StoreBusy, split_sql
from assistant.store.export import citation_label, parse_time, render_markdown
from assistant.store.records import SHORT_ID, AttachedFile, Message, Session, Summary
from assistant.store.store import ROLES, TITLE_LENGTH, Store, iso_utc, title_from

__all__ = ["BUSY_TIMEOUT_MS", "MIGRATIONS", "ROLES", "SHORT_ID", "TITLE_LENGTH", "AttachedFile", "Message",
           "Session", "SessionClaims", "Store", "StoreBusy", "Summary", "citation_label", "iso_utc", "parse_time",
           "render_markdown", "split_sql", "title_from"]
