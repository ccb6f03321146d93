"""The SQLite session store: schema migrations, durability, several processes, export."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.store import MIGRATIONS, Store, title_from
from assistant.store import db as store_db
from assistant.store import store as store_module
from models.errors import XGenError

ROOT = Path(__file__).resolve().parents[1]


def child(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Another process using the store, as a second xgen window would."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def raw_user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def store(db_path):
    with Store(db_path) as s:
        yield s


# -- schema and migrations ----------------------------------------------------------------


def test_default_location_is_the_data_directory(xgen_home):
    with Store() as s:
        assert s.path == Path(xgen_home) / "sessions.db"
    assert (Path(xgen_home) / "sessions.db").exists()


def test_new_database_is_migrated_from_empty(db_path):
    assert not db_path.exists()
    with Store(db_path) as s:
        assert s.schema_version == len(MIGRATIONS)
    assert raw_user_version(db_path) == len(MIGRATIONS)
    db = sqlite3.connect(db_path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sessions", "messages", "files", "summaries", "cache"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert db_path.stat().st_mode & 0o777 == 0o600  # private to the user


def test_reopening_keeps_everything(db_path):
    with Store(db_path) as s:
        session = s.create_session(model="xgen-7b-8k-inst-q4_k_m", engine="llama.cpp")
        s.add_message(session.id, "user", "hello", meta=None)
        s.add_message(session.id, "assistant", "hi", meta={"finish": "eos"})
        s.attach_file(session.id, "/docs/a.txt", "a.txt", "a" * 64, 42)
        s.add_summary(session.id, "/docs/a.txt", "a" * 64, "bullets", "- a")
        s.cache_put("k", "v")
    with Store(db_path) as s:  # a restart
        assert s.schema_version == len(MIGRATIONS)
        again = s.get_session(session.id)
        assert (again.title, again.model, again.engine, again.message_count) == \
            ("hello", "xgen-7b-8k-inst-q4_k_m", "llama.cpp", 2)
        assert [(m.role, m.content, m.meta) for m in s.messages(session.id)] == \
            [("user", "hello", {}), ("assistant", "hi", {"finish": "eos"})]
        assert [(f.name, f.n_tokens) for f in s.files(session.id)] == [("a.txt", 42)]
        assert [x.text for x in s.summaries(session.id)] == ["- a"]
        assert s.cache_get("k") == "v"


def test_migrations_run_in_order_once_each(db_path, monkeypatch):
    with Store(db_path) as s:
        session = s.create_session(title="kept")
    calls = []

    def add_column(db):
        calls.append(len(calls))
        db.execute("UPDATE sessions SET tag = 'migrated'")

    monkeypatch.setattr(store_db, "MIGRATIONS",
                        MIGRATIONS + ["ALTER TABLE sessions ADD COLUMN tag TEXT; CREATE TABLE extra (x);", add_column])
    with Store(db_path) as s:
        assert s.schema_version == len(MIGRATIONS) + 2
        assert s.get_session(session.id).title == "kept"
    with Store(db_path):
        pass
    assert calls == [0]  # not re-run on the next start
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT tag FROM sessions").fetchall() == [("migrated",)]
    db.close()


def test_a_failing_migration_changes_nothing(db_path, monkeypatch):
    Store(db_path).close()

    def broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS + [broken])
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(db_path)
    assert raw_user_version(db_path) == len(MIGRATIONS)
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    db.close()


def test_newer_schema_is_refused(db_path):
    Store(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(XGenError, match="newer xgen-local") as info:
        Store(db_path)
    assert "\n" not in str(info.value)
    assert raw_user_version(db_path) == len(MIGRATIONS) + 1  # left as it was


def test_a_file_that_is_not_a_database_is_refused(db_path):
    db_path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(XGenError, match="not a usable sessions database"):
        Store(db_path)


# -- durability and concurrency ---------------------------------------------------------


def test_each_write_is_visible_to_another_connection_at_once(db_path):
    writer = Store(db_path)
    reader = Store(db_path)
    raw = sqlite3.connect(db_path)  # no help from our code at all
    session = writer.create_session()
    assert reader.get_session(session.id).id == session.id
    for i in range(5):
        message = writer.add_message(session.id, "user", f"question {i}")
        assert reader.messages(session.id)[-1] == message
        assert raw.execute("SELECT content FROM messages WHERE id = ?", (message.id,)).fetchone() == (f"question {i}",)
    reply = writer.add_message(session.id, "assistant", "")
    for partial in ("The", "The answer", "The answer is 42."):  # a streamed reply saved as it grows
        writer.update_message(reply.id, partial)
        assert reader.messages(session.id)[-1].content == partial
    writer.update_message(reply.id, "The answer is 42.", {"finish": "eos"})
    assert reader.messages(session.id)[-1].meta == {"finish": "eos"}
    writer.cache_put("part", "summary")
    assert reader.cache_get("part") == "summary"
    raw.close()
    reader.close()
    writer.close()


WRITER = """
import sys, time
from pathlib import Path
from assistant.store import Store

path, name, session_id, count = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
print("ready", flush=True)
sys.stdin.readline()  # start together, once both have imported everything
store = Store(path)
if session_id == "-":
    session_id = store.create_session(title=name).id
print(session_id, flush=True)
for i in range(count):
    store.add_message(session_id, "user", f"{name} {i}", meta={"writer": name, "i": i})
    if i % 20 == 0:
        store.cache_put(f"{name}-{i}", str(i))
    time.sleep(0.001)  # a breath between writes, as any real writer has, lets the other one in
store.close()
"""


@pytest.mark.parametrize("shared", [True, False], ids=["one-session", "fresh-db-own-sessions"])
def test_two_processes_writing_at_once_lose_nothing(db_path, shared):
    n = 200
    shared_id = "-"
    if shared:
        with Store(db_path) as s:
            shared_id = s.create_session(title="shared").id
    # fresh-db: both processes create and migrate the database at the same moment
    writers = [child(WRITER, str(db_path), name, shared_id, str(n)) for name in ("A", "B")]
    for w in writers:
        assert w.stdout.readline() == "ready\n"
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    started = time.perf_counter()
    results = [w.communicate(timeout=120) for w in writers]
    seconds = time.perf_counter() - started
    for w, (out, err) in zip(writers, results):
        assert w.returncode == 0, err
    session_ids = [out.split()[0] for out, _ in results]

    assert integrity(db_path) == "ok"
    with Store(db_path) as s:
        every = sorted((m for i in set(session_ids) for m in s.messages(i)), key=lambda m: m.id)
        for name, session_id in zip("AB", session_ids):
            mine = [m for m in s.messages(session_id) if m.meta["writer"] == name]
            assert [m.content for m in mine] == [f"{name} {i}" for i in range(n)]
            assert all(s.cache_get(f"{name}-{i}") == str(i) for i in range(0, n, 20))
        assert sum(s.get_session(i).message_count for i in set(session_ids)) == 2 * n
        assert len({m.id for m in every}) == 2 * n
        assert len(s.list_sessions()) == (1 if shared else 2)
    order = "".join(m.meta["writer"] for m in every)
    spans = {name: (min(m.created_at for m in every if m.meta["writer"] == name),
                    max(m.created_at for m in every if m.meta["writer"] == name)) for name in "AB"}
    print(f"2 processes x {n} messages: {seconds:.2f} s; "
          f"{sum(a != b for a, b in zip(order, order[1:]))} switches between writers")
    # The writes really overlapped in time (otherwise this test proves nothing).
    assert spans["A"][0] < spans["B"][1] and spans["B"][0] < spans["A"][1]


def test_threads_sharing_one_store(store):
    session = store.create_session()

    def write(name):
        for i in range(50):
            store.add_message(session.id, "user", f"{name} {i}")

    threads = [threading.Thread(target=write, args=(name,)) for name in "ABCD"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    contents = [m.content for m in store.messages(session.id)]
    assert len(contents) == 200
    for name in "ABCD":
        assert [c for c in contents if c.startswith(name)] == [f"{name} {i}" for i in range(50)]


KILLED_AT_ONCE = """
import os, signal, sys
from assistant.store import Store

store = Store(sys.argv[1])
session = store.create_session()
message = store.add_message(session.id, "user", "saved before the crash")
print(session.id, message.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no exit handlers
"""


def test_sigkill_right_after_add_message_keeps_the_message(db_path):
    proc = child(KILLED_AT_ONCE, str(db_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    session_id, message_id = out.split()
    with Store(db_path) as s:
        [message] = s.messages(session_id)
        assert (message.id, message.content) == (int(message_id), "saved before the crash")
    assert integrity(db_path) == "ok"


KILLED_MID_STREAM = """
import sys
from assistant.store import Store

store = Store(sys.argv[1])
session = store.create_session()
print(session.id, flush=True)
i = 0
while True:
    message = store.add_message(session.id, "user", f"message {i}")
    print(message.id, flush=True)
    i += 1
"""


def test_sigkill_while_writing_loses_nothing_that_was_returned(db_path):
    proc = child(KILLED_MID_STREAM, str(db_path))
    session_id = proc.stdout.readline().strip()
    returned = [int(proc.stdout.readline()) for _ in range(50)]
    proc.send_signal(signal.SIGKILL)  # most likely in the middle of the next write
    proc.communicate(timeout=60)
    assert integrity(db_path) == "ok"
    with Store(db_path) as s:
        saved = {m.id: m.content for m in s.messages(session_id)}
    assert len(saved) >= len(returned)
    for i, message_id in enumerate(returned):
        assert saved[message_id] == f"message {i}"


# -- sessions, messages, files ------------------------------------------------------------


@pytest.fixture
def fixed_ids(monkeypatch):
    """Session ids handed out in order from the given hex strings."""

    def use(*hex_ids: str):
        ids = iter(hex_ids)
        monkeypatch.setattr(store_module.uuid, "uuid4", lambda: uuid.UUID(next(ids)))

    return use


def test_prefix_lookup_like_git(store, fixed_ids):
    fixed_ids("abc10000000000000000000000000000", "abc20000000000000000000000000000",
              "ffff0000000000000000000000000000")
    one, two, three = store.create_session(), store.create_session(), store.create_session()
    assert store.get_session(one.id).id == one.id
    assert store.get_session("abc1").id == one.id
    assert store.get_session("ABC2").id == two.id
    assert store.get_session(" f ").id == three.id
    with pytest.raises(XGenError, match="ambiguous: abc10000, abc20000"):
        store.get_session("ab")
    with pytest.raises(XGenError, match="no session '0123'"):
        store.get_session("0123")
    with pytest.raises(XGenError, match="give a session id"):
        store.get_session("  ")
    with pytest.raises(XGenError, match="no session"):
        store.get_session("abc%")  # not a LIKE pattern


def test_title_comes_from_the_first_user_message(store):
    session = store.create_session()
    store.add_message(session.id, "system", "You are a helpful assistant.")
    assert store.get_session(session.id).title == ""
    question = "What does the quarterly report say about   revenue growth\nin the northern region compared to last year?"
    store.add_message(session.id, "user", question)
    store.add_message(session.id, "user", "and the south?")
    title = store.get_session(session.id).title
    assert title == "What does the quarterly report say about revenue growth in…"
    assert len(title) <= 60
    assert title == title_from(question)
    assert title_from("short   one\n") == "short one"

    named = store.create_session(title="My notes")
    store.add_message(named.id, "user", "hello")
    assert store.get_session(named.id).title == "My notes"
    assert store.rename_session(named.id[:6], "Renamed").title == "Renamed"


def test_list_sessions_newest_first_with_counts(store):
    times = iter(datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc) + timedelta(minutes=i) for i in range(100))
    store._clock = lambda: next(times)
    a = store.create_session(title="a")
    b = store.create_session(title="b")
    c = store.create_session(title="c")
    store.add_message(a.id, "user", "1")
    store.add_message(a.id, "assistant", "2")
    listed = store.list_sessions()
    assert [(s.title, s.message_count) for s in listed] == [("a", 2), ("c", 0), ("b", 0)]
    assert listed[0].updated_at == "2024-05-01T12:04:00.000000Z"
    assert [s.title for s in store.list_sessions(limit=2)] == ["a", "c"]
    del b, c


def test_messages_and_meta(store):
    session = store.create_session()
    meta = {"citations": [{"number": 2, "label": "a.txt:1-4", "text": "é ü"}], "stats": {"generated": 7},
            "finish": "length"}
    message = store.add_message(session.id, "assistant", "answer [2]", meta=meta)
    assert store.messages(session.id) == [message]
    assert message.meta == meta and message.citations == meta["citations"]
    kept = store.update_message(message.id, "answer [2] longer")
    assert kept.meta == meta and kept.content == "answer [2] longer"
    with pytest.raises(XGenError, match="no session"):
        store.add_message("0" * 32, "user", "lost")
    with pytest.raises(XGenError, match="no message"):
        store.update_message(99999, "x")
    with pytest.raises(ValueError, match="role"):
        store.add_message(session.id, "robot", "beep")
    assert len(store.messages(session.id)) == 1


def test_attach_file_is_idempotent(store):
    session = store.create_session()
    first = store.attach_file(session.id, Path("/docs/a.txt"), "a.txt", "1" * 64, 10)
    again = store.attach_file(session.id, "/docs/a.txt", "a.txt", "1" * 64, 10)
    changed = store.attach_file(session.id, "/docs/a.txt", "a.txt", "2" * 64, 12)  # edited since
    assert again == first and changed.id != first.id
    assert [(f.path, f.sha256[0], f.n_tokens) for f in store.files(session.id)] == \
        [("/docs/a.txt", "1", 10), ("/docs/a.txt", "2", 12)]
    other = store.create_session()
    store.attach_file(other.id, "/docs/a.txt", "a.txt", "1" * 64, 10)
    assert len(store.files(other.id)) == 1


def test_summaries_and_cache(store):
    session = store.create_session()
    loose = store.add_summary(None, "/docs/a.txt", "1" * 64, "paragraph", "A summary.")
    tied = store.add_summary(session.id, "/docs/b.txt", "2" * 64, "bullets", "- b")
    assert store.summaries() == [loose, tied]
    assert store.summaries(session.id) == [tied]
    assert store.summaries(sha256="1" * 64, form="paragraph") == [loose]
    assert store.cache_get("missing") is None
    store.cache_put("key", "one")
    store.cache_put("key", "two")
    assert store.cache_get("key") == "two"


def test_delete_removes_the_conversation_for_good(db_path):
    secret = "my-secret-diagnosis-4821"
    with Store(db_path) as s:
        session = s.create_session()
        s.add_message(session.id, "user", f"what about {secret}?")
        s.attach_file(session.id, "/docs/a.txt", "a.txt", "1" * 64, 10)
        s.add_summary(session.id, "/docs/a.txt", "1" * 64, "bullets", f"- {secret}")
        s.cache_put("part", "kept: cache entries are keyed by content, not by session")
        assert s.delete_session(session.id[:10]).id == session.id
        with pytest.raises(XGenError):
            s.get_session(session.id)
        assert s.messages(session.id) == [] and s.files(session.id) == [] and s.summaries() == []
        assert s.cache_get("part")
        on_disk = b"".join(p.read_bytes() for p in db_path.parent.glob("sessions.db*"))
        assert secret.encode() not in on_disk  # secure_delete + WAL checkpoint
    assert integrity(db_path) == "ok"


# -- export ---------------------------------------------------------------------------------


def test_export_markdown_golden(store, fixed_ids):
    fixed_ids("0123456789abcdef0123456789abcdef")
    times = iter(datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc) + timedelta(minutes=i) for i in range(100))
    store._clock = lambda: next(times)
    session = store.create_session(model="xgen-7b-8k-inst-q4_k_m", engine="llama.cpp")
    store.attach_file(session.id, "/home/me/report.txt", "report.txt", "9f86d081884c7d659a2feaa0c55ad015" * 2, 1234)
    store.add_message(session.id, "user", "What changed in Q3?")
    store.add_message(session.id, "assistant", "Revenue rose 12% [3], mostly from exports [5].", meta={
        "citations": [
            {"number": 3, "label": "report.txt:12-30", "text": "Revenue grew 12% in Q3.\nCosts were flat."},
            {"number": 5, "label": "report.txt:41-44"},
        ],
        "stats": {"generated": 14}, "finish": "eos"})
    store.add_message(session.id, "user", "Thanks")
    expected = """\
# What changed in Q3?

- Session: `0123456789abcdef0123456789abcdef`
- Model: xgen-7b-8k-inst-q4_k_m (llama.cpp)
- Created: 2024-05-01 09:30 UTC
- Updated: 2024-05-01 09:34 UTC

## Attached files

- report.txt (`/home/me/report.txt`, 1,234 tokens, sha256 `9f86d081884c`)

## User

What changed in Q3?

## Assistant

Revenue rose 12% [3], mostly from exports [5].

Sources:

[3] report.txt:12-30

> Revenue grew 12% in Q3.
> Costs were flat.

[5] report.txt:41-44

## User

Thanks
"""
    assert store.export_markdown("0123") == expected


def test_export_builds_labels_from_name_and_lines(store):
    session = store.create_session(title="t")
    store.add_message(session.id, "assistant", "x", meta={"citations": [
        {"name": "a.md", "start_line": 3, "end_line": 9}, {"path": "/d/b.txt", "start_line": 4}, {"name": "c"}]})
    text = store.export_markdown(session.id)
    assert "[1] a.md:3-9\n\n[2] b.txt:4\n\n[3] c\n" in text
    assert text.startswith("# t\n") and "unknown model" in text


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b
                                                      and b not in (b".", b"..")))
def test_any_file_name_the_os_allows_is_stored_losslessly(db_path, name):
    from assistant.safetext import printable, shown_name

    path = os.fsdecode(b"/docs/" + name)
    with Store(db_path) as store:
        session = store.create_session()
        attached = store.attach_file(session.id, path, shown_name(name), "0" * 64, 3)
        store.add_summary(session.id, path, "0" * 64, "paragraph", "text")
        store.add_message(session.id, "assistant", "ok", meta={"sources": [{"path": path}]})
        assert os.fsencode(store.files(session.id)[0].path) == b"/docs/" + name == os.fsencode(attached.path)
        assert os.fsencode(store.summaries(session.id)[0].source_path) == b"/docs/" + name
        assert store.messages(session.id)[0].meta["sources"][0]["path"] == path
        assert printable(shown_name(name)) in store.export_markdown(session.id)  # controls dropped: see safetext
        assert store.detach_file(session.id, path) == 1
        store.delete_session(session.id)


def test_a_session_claimed_by_another_app_is_told_and_freed_when_that_app_dies(db_path):
    from assistant.store import SessionClaims

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from assistant.store import SessionClaims\n"
        f"claims = SessionClaims(Path({str(db_path)!r})); assert claims.claim('abc'); print('held', flush=True)\n"
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        mine = SessionClaims(db_path)
        assert not mine.claim("abc") and mine.claim("other")
    finally:
        holder.kill()  # as a crash: no clean-up of its own
        holder.wait()
    assert mine.claim("abc")  # the kernel dropped the dead app's lock
    second = SessionClaims(db_path)
    assert not second.claim("abc")
    mine.release()
    assert second.claim("abc") and not (db_path.parent / "sessions.db.open" / "other.lock").exists()


def test_data_version_moves_with_another_connections_writes_only(db_path):
    with Store(db_path) as mine, Store(db_path) as other:
        before = mine.data_version()
        mine.create_session("mine")
        assert mine.data_version() == before
        gone = other.create_session("theirs")
        assert mine.data_version() != before and mine.has_session(gone.id)
        other.delete_session(gone.id)
        assert not mine.has_session(gone.id)
