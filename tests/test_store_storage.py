"""The data folder (XGEN_HOME) and the sessions database on read-only, misplaced or damaged
storage: each gets one clear line and a non-zero exit, and nothing on disk is changed."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from assistant.store import Store
from models.errors import XGenError
from tests.cli_helpers import assert_one_line_failure, cli, one_error_line, xgen
from tests.read_only_mount import needs_ro_mount, read_only

@needs_ro_mount
def test_the_mount_really_is_read_only(tmp_path):
    out = subprocess.run([*read_only(tmp_path), "touch", str(tmp_path / "x")], capture_output=True, text=True)
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    assert not (tmp_path / "x").exists()


@needs_ro_mount
@pytest.mark.parametrize("command", [["sessions", "list"], ["models"], ["demo"]])
def test_xgen_home_on_an_empty_read_only_mount(tmp_path, command):
    home = tmp_path / "ro-home"
    home.mkdir()
    out = xgen(*command, env={"XGEN_HOME": str(home)}, prefix=read_only(home))
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert str(home) in line and "Read-only file system" in line
    assert list(home.iterdir()) == []


@needs_ro_mount
def test_xgen_home_read_only_with_an_existing_database(tmp_path, monkeypatch):
    home = tmp_path / "ro-home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("XGEN_HOME", str(home))
    with Store() as store:
        store.create_session(title="kept")
    before = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()}
    out = xgen("sessions", "list", env={"XGEN_HOME": str(home)}, prefix=read_only(home))
    assert out.returncode == 1
    assert one_error_line(out.stderr) == (f"error: cannot open the sessions database {home / 'sessions.db'}: its "
                                          "folder is on a read-only file system; point XGEN_HOME at a writable "
                                          "folder")
    assert {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()} == before


# -- the same failures without a mount: the OS calls made to fail ------------------------


def test_xgen_home_is_a_file(tmp_path, monkeypatch):
    a_file = tmp_path / "home"
    a_file.write_text("not a folder")
    monkeypatch.setenv("XGEN_HOME", str(a_file))
    for command in (["sessions", "list"], ["models"], ["sessions", "export", "abc"]):
        line = assert_one_line_failure(cli(*command))
        assert line == (f"error: {a_file}: the data folder (set by XGEN_HOME) is a file, not a folder; "
                        "move it aside or point XGEN_HOME at a folder")
    assert a_file.read_text() == "not a folder"


def test_xgen_home_under_a_file(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    monkeypatch.setenv("XGEN_HOME", str(a_file / "home"))
    line = assert_one_line_failure(cli("sessions", "list"))
    assert line.startswith(f"error: cannot create the data folder {a_file / 'home'}") and "Not a directory" in line


def test_sessions_db_that_cannot_be_created_is_one_line(home, monkeypatch):
    real_open = os.open

    def read_only_open(path, flags, *args):
        if str(path).endswith("sessions.db") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_open)
    line = assert_one_line_failure(cli("sessions", "list"))
    assert line == f"error: cannot create the sessions database {home / 'sessions.db'}: Read-only file system"


def test_sessions_db_that_is_a_folder(home):
    (home / "sessions.db").mkdir()
    line = assert_one_line_failure(cli("sessions", "list"))
    assert "is not a file" in line and "move it aside" in line


# -- damaged database --------------------------------------------------------------------


def _filled_database(home: Path) -> tuple[str, Path]:
    with Store() as store:
        session = store.create_session(title="Kept conversation")
        for i in range(60):
            store.add_message(session.id, "user" if i % 2 == 0 else "assistant", f"message {i} " + "words " * 400)
    db = home / "sessions.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the main file, the WAL emptied
    conn.close()
    return session.id, db


def _damage_pages(db: Path, pages: range) -> None:
    page_size = 4096
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:
        for page in pages:  # 1-based page numbers, as SQLite counts
            f.seek((page - 1) * page_size)
            f.write(bytes((page * 37 + i * 11) % 256 for i in range(page_size)))


def _files(home: Path) -> dict[str, str]:
    """The database and its WAL (the -shm file is only SQLite's shared-memory index)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in home.iterdir()
            if p.name in ("sessions.db", "sessions.db-wal") and p.stat().st_size}


@pytest.mark.parametrize("pages", [range(2, 6), range(1, 2)], ids=["btree-pages", "header-page"])
def test_damaged_database_is_refused_with_how_to_recover(home, tmp_path, pages):
    _, db = _filled_database(home)
    _damage_pages(db, pages)
    before = _files(home)
    for command in (["sessions", "list"], ["sessions", "export", "abc"]):
        line = assert_one_line_failure(cli(*command))
        what = "is not a usable sessions database" if pages.start == 1 else "is damaged"
        assert line.startswith(f"error: the sessions database {db} {what} (")
        assert f"mv {db} {db}.damaged" in line and ".recover" in line
    assert _files(home) == before


def test_summarize_never_writes_into_a_damaged_database(home, tmp_path):
    """It used to summarize and cache its parts into the damaged file."""
    _, db = _filled_database(home)
    _damage_pages(db, range(3, 5))
    before = _files(home)
    doc = tmp_path / "notes.txt"
    doc.write_text("The cooling unit in hall 3 failed on 2 September.\n")
    out = xgen("summarize", str(doc), "--model", "demo", env={"XGEN_HOME": str(home)})
    assert out.returncode == 1
    assert "is damaged" in one_error_line(out.stderr)
    assert _files(home) == before


def test_store_refuses_a_damaged_file_before_any_write(home):
    _, db = _filled_database(home)
    _damage_pages(db, range(2, 4))
    before = _files(home)
    with pytest.raises(XGenError, match="is damaged"):
        Store(db)
    assert _files(home) == before


def test_an_intact_database_still_opens(home):
    session, db = _filled_database(home)
    with Store(db) as store:
        assert len(store.messages(session)) == 60



def test_text_that_is_not_utf8_inside_a_message_is_reported_as_damage(home):
    """Such text passes quick_check (it checks pages, not what they hold); `sessions show`,
    `export` and `ask -s` then raised sqlite3's "Could not decode to UTF-8"."""
    with Store() as store:
        session = store.create_session(title="Kept conversation")
        store.add_message(session.id, "user", "What changed?")
        store.add_message(session.id, "assistant", "placeholder")
    db = home / "sessions.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE messages SET content = CAST(X'5265766ee96e7565' AS TEXT) WHERE role = 'assistant'")
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    for command in (["sessions", "show", session.id[:8]], ["sessions", "export", session.id[:8]],
                    ["ask", "-s", session.id[:8], "-q", "and then?", "--model", "http://127.0.0.1:9"]):
        line = assert_one_line_failure(cli(*command))
        assert line.startswith(f"error: the sessions database {db} is damaged (a stored text is not valid UTF-8)")
        assert f"mv {db} {db}.damaged" in line and ".recover" in line
    assert "Kept conversation" in cli("sessions", "list").output  # what is not damaged still reads


@needs_ro_mount
def test_a_full_disk_reads_and_says_it_is_full_when_writing(tmp_path, monkeypatch):
    """All of sessions list/show/export and cache info failed with "disk I/O error"."""
    from tests.read_only_mount import full_disk

    filled = tmp_path / "filled"
    filled.mkdir()
    monkeypatch.setenv("XGEN_HOME", str(filled))
    with Store() as store:
        session = store.create_session(title="Kept conversation")
        store.add_message(session.id, "user", "What changed in Q3?")
        store.add_message(session.id, "assistant", "Revenue rose 12%.")
    home = tmp_path / "home"
    home.mkdir()
    env = {"XGEN_HOME": str(home)}
    prefix = full_disk(home, filled)
    assert "Kept conversation" in xgen("sessions", "list", env=env, prefix=prefix).stdout
    shown = xgen("sessions", "show", session.id[:8], env=env, prefix=prefix)
    assert shown.returncode == 0 and "Revenue rose 12%." in shown.stdout, shown.stderr
    exported = xgen("sessions", "export", session.id[:8], env=env, prefix=prefix)
    assert exported.returncode == 0 and exported.stdout.startswith("# Kept conversation")
    assert xgen("cache", "info", env=env, prefix=prefix).returncode == 0
    deleted = xgen("sessions", "delete", session.id[:8], "-y", env=env, prefix=prefix)
    assert deleted.returncode == 1
    assert f"the disk holding {home} is full" in one_error_line(deleted.stderr)


def test_a_question_is_never_left_without_its_reply(home):
    """On a nearly full disk the question was stored and the reply's insert failed."""
    with Store() as store:
        session = store.create_session(title="t")
    with sqlite3.connect(home / "sessions.db") as conn:
        conn.execute("CREATE TRIGGER no_room BEFORE INSERT ON messages WHEN NEW.role = 'assistant' "
                     "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    with Store() as store:
        with pytest.raises(sqlite3.DatabaseError, match="disk is full"):
            store.add_exchange(session.id, "What changed?", {"finish": "streaming"})
        assert store.messages(session.id) == []
