"""`xgen index`: what is read and skipped, incremental runs, interruption, faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.library import IndexDatabase, Progress, update_library
from assistant.library import extract as extract_module
from assistant.library import walk as walk_module
from models.errors import XGenError
from tests.library_folders import EXPECTED_INDEXED, build_folder, fts_intact, indexed, passages, rows


def xgen(*args: str, env_home: Path, env_extra: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, XGEN_HOME=str(env_home), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300, **kwargs)


def many_files(folder: Path, n: int, size: int = 20_000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        words = " ".join(f"word{(i * 7 + k) % 997} item{i}" for k in range(size // 16))
        (folder / f"f{i:04d}.txt").write_text(f"File number {i}.\n\n{words}\n")
    return folder


def test_reads_what_it_should_and_says_why_for_the_rest(home, tmp_path):
    root = build_folder(tmp_path / "lib")
    out = xgen("index", str(root), "--json", env_home=home)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert indexed(home, root) == EXPECTED_INDEXED
    assert report["indexed"] == len(EXPECTED_INDEXED) == report["files"]
    why = {os.path.relpath(s["path"], root): s["why"] for s in report["skipped"]}
    assert why["notes/debug.log"].startswith(f"ignored by {root}/.gitignore")
    assert why["drafts"].startswith(f"ignored by {root}/.ignore")
    assert why["build"].startswith(f"ignored by {root}/.gitignore")
    assert why[".hidden"].startswith("hidden")
    assert why["pipe"] == "a FIFO (named pipe), not a regular file"
    assert "symbolic link to a folder" in why["notes/loop"]
    assert why["photo.png"] == "a .png file, not a document"
    assert "binary" in why["blob.xyz"]
    assert report["passages"] == rows(home, "SELECT count(*) FROM passages")[0][0] > 0
    # the Latin-1 file name survives byte for byte through the JSON
    assert os.fsencode(root) + b"/caf\xe9-name.txt" in {os.fsencode(s) for s in
                                                        (os.path.join(root, p) for p in EXPECTED_INDEXED)}
    # --hidden and --no-ignore read what was left out; search keeps those options...
    out = xgen("index", str(root), "--hidden", "--no-ignore", "--json", env_home=home)
    wider = indexed(home, root)
    assert {"notes/debug.log", "drafts/d.txt", "build/out.txt", ".hidden/h.txt"} <= wider
    assert xgen("search", str(root), "-q", "lemur", env_home=home).stdout.startswith(f"{root}/.hidden/h.txt:1-1")
    assert indexed(home, root) == wider
    # ...and an index run without them leaves those files out again
    back = json.loads(xgen("index", str(root), "--no-ignore", "--json", env_home=home).stdout)
    assert ".hidden/h.txt" not in indexed(home, root) and "drafts/d.txt" in indexed(home, root)
    assert back["removed"] == len(wider - indexed(home, root)) and back["indexed"] == 0


def test_summary_line_and_one_line_errors(home, tmp_path):
    root = build_folder(tmp_path / "lib")
    out = xgen("index", str(root), env_home=home)
    assert out.returncode == 0 and out.stdout.count("\n") == 1
    assert out.stdout.startswith(f"{len(EXPECTED_INDEXED)} indexed, 0 unchanged, 0 removed, ")
    missing = xgen("index", str(tmp_path / "nope"), env_home=home)
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: No such file or folder: {tmp_path / 'nope'}"


def test_progress_fits_a_narrow_terminal(home, tmp_path):
    """A progress line wider than the terminal wraps, and "\r" then rewrites only its last
    row: in an 80-column tmux pane every update stood on a line of its own."""
    root = many_files(tmp_path / "a-folder-with-a-long-name-as-case-folders-have", 40, size=2000)
    out = xgen("index", str(root), env_home=home, env_extra={"COLUMNS": "40"})
    assert out.returncode == 0, out.stderr
    shown = [part for part in out.stderr.replace("\n", "\r").split("\r") if part.strip()]
    assert any(part.startswith("indexing ") for part in shown)
    assert all(len(part) <= 39 for part in shown), shown


def test_touch_edit_delete(home, tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    (root / "a.txt").write_text("alpha bravo charlie\n")
    (root / "b.txt").write_text("delta echo foxtrot\n")
    (root / "c.txt").write_text("golf hotel india\n")
    update_library([root])
    ids = rows(home, "SELECT id, text FROM passages ORDER BY id")
    st = (root / "a.txt").stat()
    os.utime(root / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touch only
    report = update_library([root])
    assert (report.indexed, report.unchanged, report.removed) == (0, 3, 0)
    assert rows(home, "SELECT id, text FROM passages ORDER BY id") == ids  # nothing re-chunked
    (root / "b.txt").write_text("delta echo quebec romeo\n")  # edit
    (root / "c.txt").unlink()  # delete
    report = update_library([root])
    assert (report.indexed, report.unchanged, report.removed) == (1, 1, 1)
    texts = [t for _, t in rows(home, "SELECT id, text FROM passages ORDER BY id")]
    assert sorted(texts) == ["alpha bravo charlie\n", "delta echo quebec romeo\n"]
    assert fts_intact(home)
    db = IndexDatabase()
    try:
        from assistant.library import search
        assert [h.text for h in search(db, "quebec")] == ["delta echo quebec romeo\n"]
        assert search(db, "foxtrot") == [] and search(db, "golf") == []
    finally:
        db.close()


def _kill_when(process: subprocess.Popen, home: Path, committed: int, *, ctrl_c: bool = False) -> None:
    """Once `committed` files are in the index: SIGKILL, or (`ctrl_c`) SIGINT to the whole
    process group, as a terminal's Ctrl+C sends it (the workers get it too)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the index run ended before it could be killed")
        try:
            done = rows(home, "SELECT count(*) FROM files WHERE sha256 IS NOT NULL")[0][0]
        except Exception:  # noqa: BLE001 - the database may not exist yet
            done = 0
        if done >= committed:
            if ctrl_c:
                os.killpg(process.pid, signal.SIGINT)
            else:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=120)
            return
        time.sleep(0.02)
    pytest.fail("no progress")


def test_worker_processes_start_inside_an_app_that_captures_stderr(tmp_path):
    """Textual replaces sys.stderr with an object whose fileno() is -1; multiprocessing hands
    that to its helper process, and the app failed to index any folder read by workers. A
    fresh process: the helper must not be running already."""
    root = many_files(tmp_path / "lib", 3, size=2000)
    script = (
        "import sys\n"
        "class Captured:\n"
        "    def write(self, text): return len(text)\n"
        "    def flush(self): pass\n"
        "    def fileno(self): return -1\n"
        "from assistant.library import job, update_library\n"
        "job.INLINE_FILES = 0  # read in worker processes\n"
        "sys.stderr = Captured()\n"
        f"report = update_library([{str(root)!r}], workers=1)\n"
        "print(report.indexed)\n")
    env = dict(os.environ, XGEN_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr[-2000:]


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    # 24 MB: several commit groups (8 MB or 1 s each), so the kill lands mid-run even on a
    # quiet machine (2.4 MB went in one group, committed before the kill could land).
    root = many_files(tmp_path / "lib", 120, size=200_000)
    clean_home, home = tmp_path / "clean", tmp_path / "killed"
    clean_home.mkdir(), home.mkdir()
    assert xgen("index", str(root), env_home=clean_home).returncode == 0
    env = dict(os.environ, XGEN_HOME=str(home))
    process = subprocess.Popen([sys.executable, "-m", "assistant.cli", "index", str(root)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(process, home, 10)
    kept = rows(home, "SELECT count(*) FROM files WHERE sha256 IS NOT NULL")[0][0]
    assert 10 <= kept < 120
    out = xgen("index", str(root), "--json", env_home=home)
    report = json.loads(out.stdout)
    assert report["unchanged"] >= kept and report["indexed"] + report["unchanged"] == 120
    assert passages(home) == passages(clean_home)
    assert fts_intact(home)


def test_ctrl_c_in_a_terminal_stops_cleanly_and_the_same_command_goes_on(tmp_path):
    """Ctrl+C reaches the worker processes too: a worker still starting printed a
    KeyboardInterrupt traceback, and leaving with os._exit made multiprocessing's helper warn
    of leaked semaphores."""
    root = many_files(tmp_path / "lib", 120, size=200_000)
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, XGEN_HOME=str(home))
    process = subprocess.Popen([sys.executable, "-m", "assistant.cli", "index", str(root)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _kill_when(process, home, 10, ctrl_c=True)
    err = process.stderr.read().decode()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "leaked" not in err, err
    assert "stopped: what was indexed is kept" in err
    report = json.loads(xgen("index", str(root), "--json", env_home=home).stdout)
    assert report["unchanged"] >= 10 and report["indexed"] + report["unchanged"] == 120


def test_two_runs_at_once_never_duplicate(tmp_path):
    root = many_files(tmp_path / "lib", 60, size=4000)
    clean_home, home = tmp_path / "clean", tmp_path / "shared"
    clean_home.mkdir(), home.mkdir()
    assert xgen("index", str(root), env_home=clean_home).returncode == 0
    env = dict(os.environ, XGEN_HOME=str(home))
    runs = [subprocess.Popen([sys.executable, "-m", "assistant.cli", "index", str(root)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    assert passages(home) == passages(clean_home)
    assert rows(home, "SELECT count(*) FROM files")[0][0] == 60
    assert fts_intact(home)


def test_disk_full_keeps_what_was_committed(home, tmp_path, monkeypatch):
    from assistant.library import job

    monkeypatch.setattr(job, "GROUP_BYTES", 1)  # one file per transaction: some fit, the rest not
    root = many_files(tmp_path / "lib", 6, size=30_000)
    db = IndexDatabase()
    pages = db.query("PRAGMA page_count")[0][0]
    db.query(f"PRAGMA max_page_count = {pages + 40}")  # room for about two files
    with pytest.raises(XGenError, match=r"^the disk is full: \d+ files were indexed in this run and are kept"):
        update_library([root], db=db)
    db.close()
    kept = rows(home, "SELECT count(*) FROM files WHERE sha256 IS NOT NULL")[0][0]
    assert 1 <= kept < 6
    report = update_library([root])
    assert report.indexed == 6 - kept and report.unchanged == kept
    assert fts_intact(home)


def test_file_changing_while_read_is_read_again_next_time(home, tmp_path, monkeypatch):
    root = tmp_path / "lib"
    root.mkdir()
    target = root / "growing.txt"
    target.write_text("first version about kestrels\n")
    update_library([root])
    target.write_text("second version about ospreys\n")
    real_open = extract_module.open_regular

    class Growing:
        def __init__(self, f):
            self.f = f

        def read(self, n):
            data = self.f.read(n)
            with open(target, "a") as out:
                out.write("appended while reading\n")
            return data

        def fileno(self):
            return self.f.fileno()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    with monkeypatch.context() as patch:
        patch.setattr(extract_module, "open_regular", lambda path, label: Growing(real_open(path, label)))
        report = update_library([root])
    assert [s.why for s in report.skipped] == ["changed while it was being read; it is read again on the next run"]
    assert [t for (t,) in rows(home, "SELECT text FROM passages")] == ["first version about kestrels\n"]
    report = update_library([root])
    assert report.indexed == 1
    assert [t for (t,) in rows(home, "SELECT text FROM passages")] == [target.read_text()]


def test_unlistable_folder_keeps_its_files_and_unreadable_file_says_why(home, tmp_path, monkeypatch):
    root = tmp_path / "lib"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "x.txt").write_text("inside a folder that will be locked\n")
    (root / "y.txt").write_text("a readable file\n")
    update_library([root])
    real_scandir = os.scandir

    def scandir(path):
        if os.fsencode(path).endswith(b"/locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(walk_module.os, "scandir", scandir)
    (root / "y.txt").write_text("a file that became unreadable\n")
    monkeypatch.setattr(extract_module, "open_regular",
                        lambda path, label: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    report = update_library([root])
    whys = {os.path.basename(s.path): s.why for s in report.skipped}
    assert whys[b"locked"] == "cannot be listed: Permission denied; its files already indexed are kept"
    assert whys[b"y.txt"] == "cannot be read: Permission denied"
    assert report.removed == 0
    assert "inside a folder that will be locked\n" in [t for (t,) in rows(home, "SELECT text FROM passages")]


def test_folder_removed_mid_index(home, tmp_path):
    root = tmp_path / "lib"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
        for i in range(3):
            (root / sub / f"{i}.txt").write_text(f"text {sub} {i}\n")

    def remove_b(event):
        if isinstance(event, Progress) and event.files_done == 0 and (root / "b").exists():
            shutil.rmtree(root / "b")

    report = update_library([root], on_event=remove_b)
    assert indexed(home, root) == {"a/0.txt", "a/1.txt", "a/2.txt"}
    assert report.indexed == 3 and not report.stopped
    assert fts_intact(home)


def test_damaged_or_newer_index_is_refused_then_rebuilt(home, tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    (root / "a.txt").write_text("some text about otters\n")
    assert xgen("index", str(root), env_home=home).returncode == 0
    import sqlite3

    db = sqlite3.connect(home / "library.db")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    out = xgen("index", str(root), env_home=home)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "written by a newer xgen-local" in out.stderr and "xgen index --rebuild" in out.stderr
    # damage the FTS index's own pages (what its integrity-check sees on SQLite 3.40)
    assert xgen("index", str(root), "--rebuild", env_home=home).returncode == 0
    db = sqlite3.connect(home / "library.db")
    db.execute("UPDATE passages_fts_data SET block = substr(block, 1, 4) || zeroblob(length(block) - 4) "
               "WHERE id > 10")
    db.commit()
    db.close()
    out = xgen("search", str(root), "-q", "otters", env_home=home)
    assert out.returncode == 1 and out.stderr.startswith("error: the library index ") and "is damaged" in out.stderr
    assert out.stderr.count("\n") == 1
    assert xgen("index", str(root), "--rebuild", env_home=home).returncode == 0
    found = json.loads(xgen("search", str(root), "-q", "otters", "--json", env_home=home).stdout)
    assert [h["text"] for h in found["hits"]] == ["some text about otters\n"]


def test_an_index_of_schema_1_is_migrated_and_keeps_its_passages(home, tmp_path):
    """Schema 1 stored each passage's token count; 2 drops the column and keeps the rest."""
    import sqlite3

    from assistant.library.schema import MIGRATIONS
    from assistant.store.db import split_sql

    root = tmp_path / "lib"
    root.mkdir()
    (root / "a.txt").write_text("some text about otters\n")
    db = sqlite3.connect(home / "library.db", isolation_level=None)
    for statement in split_sql(MIGRATIONS[0]):
        db.execute(statement)
    st = (root / "a.txt").stat()
    db.execute("INSERT INTO roots (path, created_at) VALUES (?, 0)", (os.fsencode(root),))
    db.execute("INSERT INTO files (path, size, mtime_ns, inode, sha256, kind, status, n_passages, updated_at) "
               "VALUES (?, ?, ?, ?, 'x', 'text', 'indexed', 1, 0)",
               (os.fsencode(root / "a.txt"), st.st_size, st.st_mtime_ns, st.st_ino))
    db.execute("INSERT INTO passages (file_id, seq, start_char, end_char, start_line, end_line, n_tokens, text) "
               "VALUES (1, 0, 0, 23, 1, 1, 5, 'some text about otters\n')")
    db.execute("PRAGMA user_version = 1")
    db.close()
    report = update_library([root])
    assert (report.indexed, report.unchanged) == (0, 1)  # migrated, not re-read
    assert "n_tokens" not in {r[1] for r in rows(home, "PRAGMA table_info(passages)")}
    assert rows(home, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert fts_intact(home)
    found = json.loads(xgen("search", str(root), "-q", "otters", "--json", env_home=home).stdout)
    assert [(h["text"], h["start_line"]) for h in found["hits"]] == [("some text about otters\n", 1)]
