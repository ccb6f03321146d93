"""Bad state and odd files (issue 11, point 7): each gets one clear line and a non-zero exit.

`XGEN_HOME` on a file or a read-only mount, a damaged sessions.db, outputs on a read-only
file system or /dev/full, `--force` onto links, devices and FIFOs, odd entries in the
models folder, FIFOs and devices given as documents. Every check runs the real command
(in a subprocess where a hang, a traceback at exit or the exit code itself is the point).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.store import Store
from models.errors import XGenError

ROOT = Path(__file__).resolve().parents[1]


def xgen(*args: str, env: dict | None = None, timeout: float = 60, stdin=subprocess.DEVNULL,
         stdout=subprocess.PIPE, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run `xgen ARGS` in a subprocess; a hang fails the test (TimeoutExpired) instead of the run."""
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    full_env.pop("XGEN_MODEL", None)
    return subprocess.run([*prefix, sys.executable, "-m", "assistant.cli", *args], cwd=ROOT, env=full_env,
                          stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout, text=True)


def one_error_line(stderr: str) -> str:
    """The run's stderr is exactly one `error: ...` line (no traceback, no "Exception ignored")."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def assert_one_line_failure(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    return errors[0]


@pytest.fixture
def session_id(home) -> str:
    with Store() as store:
        session = store.create_session(title="Q3 report")
        store.add_message(session.id, "user", "What changed in Q3?")
        store.add_message(session.id, "assistant", "Revenue rose 12%.")
    return session.id


# -- read-only mounts: a real one (a bind mount in a private mount namespace) ------------


def _can_mount_read_only() -> str | None:
    """None if this machine lets us make a private read-only bind mount, else why not."""
    if os.geteuid() != 0:
        return "not root: no mount namespace for a read-only bind mount (the EROFS paths are tested below)"
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp"],
                           capture_output=True, timeout=20)
    return None if probe.returncode == 0 else f"cannot bind-mount read-only here: {probe.stderr!r}"


READ_ONLY_SKIP = _can_mount_read_only()
needs_ro_mount = pytest.mark.skipif(READ_ONLY_SKIP is not None, reason=str(READ_ONLY_SKIP))


def read_only(folder: Path) -> tuple[str, ...]:
    """A command prefix that runs the command with `folder` mounted read-only (for it alone:
    the mount lives in a private mount namespace and goes away with the process)."""
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ("unshare", "-m", "sh", "-c", script, "sh", str(folder))


@needs_ro_mount
def test_the_mount_really_is_read_only(tmp_path):
    out = subprocess.run([*read_only(tmp_path), "touch", str(tmp_path / "x")], capture_output=True, text=True)
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    assert not (tmp_path / "x").exists()


@needs_ro_mount
@pytest.mark.parametrize("command", [["sessions", "list"], ["models"]])
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


@needs_ro_mount
def test_export_onto_a_read_only_file_system(tmp_path, session_id, home):
    target = tmp_path / "ro-out"
    target.mkdir()
    out = xgen("sessions", "export", session_id[:8], "-o", str(target / "chat.md"),
               env={"XGEN_HOME": str(home)}, prefix=read_only(target))
    assert out.returncode == 1
    line = one_error_line(out.stderr)
    assert str(target / "chat.md") in line and "Read-only file system" in line
    assert list(target.iterdir()) == []


@needs_ro_mount
def test_convert_onto_a_read_only_file_system(tmp_path, tiny_checkpoint):
    target = tmp_path / "ro-models"
    target.mkdir()
    out = xgen("convert", str(tiny_checkpoint), "-t", "f16", "-o", str(target / "tiny.gguf"),
               env={"XGEN_HOME": str(tmp_path / "home")}, prefix=read_only(target), timeout=180)
    assert out.returncode == 1
    progress = [line for line in out.stderr.replace("\r", "\n").splitlines() if line.startswith("converting:")]
    assert len(progress) <= 1  # the bar, never started
    line = one_error_line("\n".join(line for line in out.stderr.replace("\r", "\n").splitlines()
                                    if not line.startswith("converting:")))
    assert "tiny.gguf" in line and "Read-only file system" in line
    assert list(target.iterdir()) == []


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


def test_read_only_folder_refuses_before_writing_and_cleanup_cannot_mask_it(tmp_path, monkeypatch):
    """atomic_output on a read-only folder: one XGenError up front (the pre-clean unlink
    fails with EROFS even for a missing file), and a failing clean-up never replaces the
    error that caused it."""
    from models import atomic
    from models.atomic import atomic_output

    out = tmp_path / "x.md"
    real_unlink = Path.unlink

    def erofs_unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", erofs_unlink)
    with pytest.raises(XGenError, match=r"^cannot write .*x\.md: Read-only file system"):
        with atomic_output(out):
            raise AssertionError("the block must not run")
    monkeypatch.setattr(Path, "unlink", real_unlink)

    # The body fails (disk full), then the clean-up fails too: the body's error comes out.
    calls = {"n": 0}

    def unlink_fails_after_setup(self, missing_ok=False):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink_fails_after_setup)
    with pytest.raises(OSError) as caught:
        with atomic_output(out) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.setattr(Path, "unlink", real_unlink)
    real_unlink(tmp)
    assert list(tmp_path.iterdir()) == []
    assert atomic.partial_path(out) == tmp


def test_export_that_fails_mid_write_is_one_line_and_leaves_nothing(session_id, tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "chat.md"
    line = assert_one_line_failure(cli("sessions", "export", session_id[:8], "-o", str(out)))
    assert line == f"error: cannot write {out}: No space left on device; nothing was written"
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("command", [["sessions", "export"], ["sessions", "show"]])
def test_stdout_on_dev_full(session_id, home, command):
    with open("/dev/full", "w") as full:
        out = xgen(*command, session_id[:8], env={"XGEN_HOME": str(home)}, stdout=full)
    assert out.returncode == 1
    assert one_error_line(out.stderr) == "error: cannot write to the standard output: No space left on device"


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


# -- --force onto links, devices, FIFOs, sockets ----------------------------------------


def test_export_force_writes_through_a_symbolic_link(session_id, tmp_path):
    real = tmp_path / "real" / "chat.md"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "chat.md"
    link.symlink_to(real)
    result = cli("sessions", "export", session_id[:8], "-o", str(link), "--force")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("# Q3 report")
    assert sorted(p.name for p in real.parent.iterdir()) == ["chat.md"]  # no .partial left

    # Without --force, an existing file behind the link is kept.
    real.write_text("old")
    line = assert_one_line_failure(cli("sessions", "export", session_id[:8], "-o", str(link)))
    assert "already exists" in line and real.read_text() == "old"


def test_export_through_a_dangling_link_creates_its_target(session_id, tmp_path):
    real = tmp_path / "chat-target.md"
    link = tmp_path / "chat.md"
    link.symlink_to(real)
    result = cli("sessions", "export", session_id[:8], "-o", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and real.read_text().startswith("# Q3 report")


def _special_files(tmp_path: Path) -> dict[str, Path]:
    found = {}
    fifo = tmp_path / "fifo.md"
    os.mkfifo(fifo)
    found["FIFO"] = fifo
    sock_path = tmp_path / "sock.md"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    found["socket"] = sock_path
    device = tmp_path / "null.md"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
        found["character device"] = device
    except (PermissionError, OSError):
        pass  # no CAP_MKNOD here: the FIFO and the socket still test the refusal
    return found


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_export_force_never_replaces_a_device_fifo_or_socket(session_id, tmp_path):
    for what, path in _special_files(tmp_path).items():
        mode = path.lstat().st_mode
        for force in ([], ["--force"]):
            line = assert_one_line_failure(cli("sessions", "export", session_id[:8], "-o", str(path), *force))
            assert line.startswith(f"error: {path} is a {what}, not a regular file"), line
            assert path.lstat().st_mode == mode  # still the same kind of file, not replaced
        # And through a link to it.
        link = tmp_path / f"link-to-{path.name}"
        link.symlink_to(path)
        line = assert_one_line_failure(cli("sessions", "export", session_id[:8], "-o", str(link), "--force"))
        assert "not a regular file" in line and path.lstat().st_mode == mode and link.is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


# -- the models folder -------------------------------------------------------------------


def test_models_lists_only_usable_files(home, converted):
    models = home / "models"
    models.mkdir()
    (models / "dangling.gguf").symlink_to(home / "gone.gguf")
    (models / "folder.gguf").mkdir()
    (models / "notes.gguf").write_text("not a model\n")
    real = converted("q8_0")
    (models / "truncated.gguf").write_bytes(real.read_bytes()[: 64 << 10])
    (models / "good.gguf").symlink_to(real)  # a link to a real model is a model
    os.mkfifo(models / "pipe.gguf")

    result = cli("models")
    assert result.exit_code == 0, result.output
    listed, _, rest = result.output.partition("Local models in")[2].partition("Not usable (left out):")
    assert [line.split()[0] for line in listed.splitlines()[1:] if line.strip()] == ["good.gguf"]
    reasons = {line.split()[0]: line.split(None, 1)[1] for line in rest.split("Default:")[0].splitlines()
               if line.strip()}
    assert reasons == {"dangling.gguf": "a broken symbolic link", "folder.gguf": "a folder, not a file",
                       "notes.gguf": "not a GGUF file", "pipe.gguf": "not a regular file",
                       "truncated.gguf": reasons["truncated.gguf"]}
    assert reasons["truncated.gguf"].startswith(("truncated", "damaged GGUF header"))

    from assistant.modelref import local_gguf_files

    assert [p.name for p in local_gguf_files()] == ["good.gguf", "truncated.gguf"]  # cheap check: the magic


# -- FIFOs, devices and sockets as documents ---------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("command", [["summarize"], ["ask", "-q", "What failed?"]])
def test_fifo_without_a_writer_is_refused_not_waited_on(tmp_path, command):
    fifo = tmp_path / "notes.txt"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    out = xgen(command[0], str(fifo), *command[1:], "--model", "demo", env={"XGEN_HOME": str(tmp_path / "h")},
               timeout=60)
    assert time.monotonic() - t0 < 30
    assert out.returncode == 1
    assert one_error_line(out.stderr).startswith(f"error: {fifo} is a FIFO (named pipe), not a regular file")


def test_devices_and_sockets_are_not_read(tmp_path):
    from assistant.documents import load_document, open_for_summary

    sock_path = tmp_path / "s.txt"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    for path, what in (("/dev/zero", "a device"), (sock_path, "a socket")):
        for load in (load_document, open_for_summary):
            with pytest.raises(XGenError, match=f"is {what}, not a regular file"):
                load(path)


def test_a_link_to_a_regular_file_is_still_read(tmp_path):
    from assistant.documents import load_document

    real = tmp_path / "real.txt"
    real.write_text("The cooling unit failed.\n")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    assert load_document(link).text == "The cooling unit failed.\n"


def test_a_fifo_swapped_in_after_the_check_does_not_block(tmp_path, monkeypatch):
    """Between stat() and open() the file became a FIFO: opening must not wait for a writer."""
    from assistant.documents import load

    fifo = tmp_path / "swapped.txt"
    os.mkfifo(fifo)
    real_stat = Path.stat

    def looks_regular(self, *args, **kwargs):
        st = real_stat(self, *args, **kwargs)
        if self == fifo:
            return os.stat_result((stat.S_IFREG | 0o644, *st[1:6], 10, *st[7:]))
        return st

    monkeypatch.setattr(Path, "stat", looks_regular)
    t0 = time.monotonic()
    with pytest.raises(XGenError, match="is a FIFO"):
        load.load_document(fifo)
    assert time.monotonic() - t0 < 5


# -- files whose name says PDF or DOCX but whose bytes do not -----------------------------


@pytest.mark.parametrize("name, data, message", [
    ("notes.pdf", b"Minutes of the meeting\nThe budget was approved.\n",
     "notes.pdf is not a PDF: it holds plain text; rename it (e.g. to .txt) to read it as text"),
    ("notes.docx", "Procès-verbal de la réunion\n".encode("cp1252"),
     "notes.docx is not a Word .docx file: it holds plain text; rename it (e.g. to .txt) to read it as text"),
    ("scan.pdf", b"\x89PNG\r\n\x1a\n" + bytes(200),
     "scan.pdf is not a PDF: it is a PNG image (text in images needs OCR)"),
    ("report.docx", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n", "report.docx is a PDF, not a Word .docx file; "
     "rename it to .pdf"),
])
def test_a_file_that_is_not_what_its_name_says(tmp_path, name, data, message):
    from assistant.documents import load_document

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(XGenError) as caught:
        load_document(path)
    assert str(caught.value) == message
    assert "damaged" not in str(caught.value)


def test_a_docx_named_pdf_is_named_as_such(tmp_path):
    from assistant.documents import load_document
    from tests.test_documents import make_docx

    path = make_docx(tmp_path / "real.docx").rename(tmp_path / "real.pdf")
    with pytest.raises(XGenError, match=r"^real\.pdf is a Word \.docx file, not a PDF; rename it to \.docx$"):
        load_document(path)


def test_text_named_pdf_from_the_command_line(tmp_path):
    path = tmp_path / "notes.pdf"
    path.write_text("Minutes of the meeting\n")
    out = xgen("summarize", str(path), "--model", "demo", env={"XGEN_HOME": str(tmp_path / "h")})
    assert out.returncode == 1
    assert one_error_line(out.stderr) == ("error: notes.pdf is not a PDF: it holds plain text; rename it "
                                          "(e.g. to .txt) to read it as text")


def _docx_with(tmp_path: Path, member: str, change) -> Path:
    import io
    import zipfile

    from tests.test_documents import make_docx

    raw = make_docx(tmp_path / "source.docx").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            dst.writestr(item.filename, change(content) if item.filename == member else content)
    path = tmp_path / "bad.docx"
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("member, change", [
    ("word/document.xml", lambda c: c[: len(c) // 2]),
    ("word/document.xml", lambda c: c.replace(b"<w:body>", b"<w:body><<")),
    ("word/document.xml", lambda c: c.replace(b"budget", b"&undefined;")),
    ("word/styles.xml", lambda c: c[:100]),
    ("[Content_Types].xml", lambda c: c[:50]),
    ("word/_rels/document.xml.rels", lambda c: c[:50]),
], ids=["truncated", "bad-tag", "undefined-entity", "styles", "content-types", "rels"])
def test_docx_with_bad_xml_names_the_part_not_lxml_internals(tmp_path, member, change):
    from assistant.documents import load_document

    with pytest.raises(XGenError) as caught:
        load_document(_docx_with(tmp_path, member, change))
    message = str(caught.value)
    assert message.startswith(f"bad.docx is not a readable Word .docx file (damaged): its part {member} "
                              "is not well-formed XML at line "), message
    for internal in ("<string>", "AttValue", "StartTag", "Entity '", "standalone accepts"):
        assert internal not in message


# -- a remote server that accepts and never answers --------------------------------------


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte (a hung server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._stop = False
        import threading

        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.held.append(conn)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self.thread.join(2)
        for conn in self.held:
            conn.close()
        self.sock.close()


def _notes(tmp_path: Path) -> Path:
    notes = tmp_path / "notes.txt"
    notes.write_text("The cooling unit in hall 3 failed on 2 September.\n")
    return notes


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_server_that_never_answers_is_given_up_on_with_the_wait_shown(tmp_path, how):
    with SilentServer() as server:
        timeout = ["--timeout", "3"] if how == "option" else []
        env = {"XGEN_HOME": str(tmp_path / "h"), **({"XGEN_REMOTE_TIMEOUT": "3"} if how == "env" else {})}
        t0 = time.monotonic()
        out = xgen("ask", str(_notes(tmp_path)), "-q", "What failed?", "--model", server.url, "--ctx", "2048",
                   *timeout, env=env, timeout=60)
        elapsed = time.monotonic() - t0
    assert out.returncode == 1
    assert 3 <= elapsed < 20  # gave up after the 3 s asked for, not httpx's 10 minutes
    chunks = out.stderr.replace("\r", "\n").splitlines()  # (text mode turns "\r" into "\n" already)
    waits = [c.strip() for c in chunks if c.strip().startswith("waiting for")]
    assert waits and waits[0].startswith(f"waiting for {server.url}: 1 s (gives up after 3 s)"), out.stderr
    assert any(w.startswith(f"waiting for {server.url}: 2 s") for w in waits), out.stderr  # it counts
    last = out.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last == (f"error: {server.url} sent nothing for 3 s after GET /v1/models; it may be stuck, or busy "
                    "with a long prompt (wait longer with --timeout SECONDS or XGEN_REMOTE_TIMEOUT)")
    assert "Traceback" not in out.stderr


def test_a_server_silent_before_the_first_token(tmp_path):
    """It answers the model list, then accepts the completion and sends no token."""
    from tests.openai_double import OpenAIDouble

    with OpenAIDouble(["never sent"], delay=60) as server:
        t0 = time.monotonic()
        out = xgen("summarize", str(_notes(tmp_path)), "--model", server.url, "--timeout", "2",
                   env={"XGEN_HOME": str(tmp_path / "h")}, timeout=60)
        elapsed = time.monotonic() - t0
    assert out.returncode == 1 and elapsed < 20
    assert "waiting for " + server.url + ": 1 s" in out.stderr
    last = out.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith(f"error: {server.url} sent nothing for 2 s before the first token;"), out.stderr
    assert "Traceback" not in out.stderr


def test_remote_engine_timeout_and_wait_notices_in_process(monkeypatch):
    from assistant.engines.remote import DEFAULT_TIMEOUT, RemoteEngine, default_timeout

    monkeypatch.delenv("XGEN_REMOTE_TIMEOUT", raising=False)
    assert default_timeout() == DEFAULT_TIMEOUT == 120
    monkeypatch.setenv("XGEN_REMOTE_TIMEOUT", "soon")
    with pytest.raises(XGenError, match="XGEN_REMOTE_TIMEOUT must be a number of seconds"):
        default_timeout()
    monkeypatch.setenv("XGEN_REMOTE_TIMEOUT", "1.5")
    heard: list = []
    with SilentServer() as server:
        t0 = time.monotonic()
        with pytest.raises(XGenError, match=r"sent nothing for 1\.5 s after GET /v1/models"):
            RemoteEngine(server.url, n_ctx=2048, on_wait=heard.append)
        assert time.monotonic() - t0 < 5
    assert heard[0] == f"waiting for {server.url}: 1 s (gives up after 1.5 s)" and heard[-1] is None


def test_a_prompt_server_is_not_slowed_or_noisy(tmp_path):
    """A server that answers at once: no waiting line, the answer as before."""
    from tests.openai_double import OpenAIDouble

    with OpenAIDouble(["It failed on 2 September [1]."]) as server:
        out = xgen("ask", str(_notes(tmp_path)), "-q", "What failed?", "--model", server.url, "--timeout", "5",
                   env={"XGEN_HOME": str(tmp_path / "h")}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "It failed on 2 September" in out.stdout and "waiting for" not in out.stderr


# -- the free-space check before a conversion --------------------------------------------


@pytest.mark.parametrize("file_type", ["q8_0", "q4_k_m"])
def test_free_space_estimate_is_honest(tiny_checkpoint, tmp_path, monkeypatch, file_type):
    """The space asked for is the output's size (from the tensor types and the vocabulary)
    plus a little, never less: a 34 MB output with 90 MB free used to be refused (the
    check added a flat 64 MB)."""
    import converter.convert as convert_module

    asked: list[int] = []
    real_check = convert_module.check_free_space

    def check(folder, needed):
        asked.append(needed)
        real_check(folder, needed)

    monkeypatch.setattr(convert_module, "check_free_space", check)
    total, used = 10 << 30, 10 << 30
    monkeypatch.setattr(convert_module.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(total, used, 90 << 20))  # 90 MB free
    result = convert_module.convert(tiny_checkpoint, tmp_path / f"tiny-{file_type}.gguf", file_type)
    size = result.path.stat().st_size
    assert 20 << 20 < size < 40 << 20  # the "30 MB output"
    (needed,) = asked
    assert size <= needed <= size + (512 << 10), (size, needed)


def test_free_space_just_below_the_output_size_is_refused(tiny_checkpoint, tmp_path, monkeypatch):
    import converter.convert as convert_module

    out = tmp_path / "tiny.gguf"
    size = convert_module.convert(tiny_checkpoint, out, "q8_0").path.stat().st_size
    out.unlink()
    monkeypatch.setattr(convert_module.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, size - 1))
    with pytest.raises(XGenError, match=r"MiB needed for the output, only 32\.\d MiB free"):
        convert_module.convert(tiny_checkpoint, out, "q8_0")
    assert list(tmp_path.iterdir()) == []


# -- progress of a streamed summary ------------------------------------------------------


def test_streamed_summary_progress_moves_with_each_part(tmp_path):
    """A 4 MB window holds hundreds of parts for a real model: progress moved once per
    window, so a 60 MB summary showed "read 4 of 60 MiB" for hours. It now moves per part."""
    from assistant.documents import open_for_summary
    from tests.fake_engine import FakeEngine
    from assistant.summarize import Summarizer

    path = tmp_path / "shift.log"
    path.write_text("".join(f"Entry {i}: the night shift logged {i} alarms on line {i % 9}.\n\n"
                            for i in range(3000)))
    size = path.stat().st_size
    stream = open_for_summary(path, max_bytes=1024, window_bytes=size // 3 + 1)  # three windows
    seen: list[tuple[str, int, int]] = []
    result = Summarizer(FakeEngine(n_ctx=1024, default_reply="Alarms.")).summarize(
        stream, on_progress=lambda stage, done, total: seen.append((stage, done, total)))
    reads = [done for stage, done, total in seen if stage == "read"]
    assert all(total == size for stage, _, total in seen if stage == "read")
    assert result.stats.parts > 30
    assert len(reads) >= result.stats.parts  # once per part (and once at the end), not once per window
    assert reads == sorted(reads) and reads[-1] == size
    # Evenly spread: no jump of a whole window, and it moves within the first window.
    steps = [b - a for a, b in zip([0, *reads], reads)]
    assert max(steps) < size / 10, steps
    assert len({r for r in reads if r < size // 3}) > 5


def test_the_read_line_shows_the_movement(capsys):
    from assistant.cli.printer import EventPrinter

    show = EventPrinter(quiet=False).progress
    total = 60 << 20
    for done in (int(4.2 * 2**20), int(4.4 * 2**20), total):
        show("read", done, total)
    err = capsys.readouterr().err
    assert "\rread 4.2 of 60.0 MiB (7%)…" in err and "\rread 4.4 of 60.0 MiB (7%)…" in err
    assert err.endswith("\rread 60.0 of 60.0 MiB (100%)…\n")


# -- standard input over the size limit streams like a file ------------------------------

STDIN_SUMMARY = r"""
import json, resource, sys
import assistant.modelref
from assistant.engines.base import Completion, GenerationStats
from tests.fake_engine import FakeEngine
from assistant.modelref import LoadedModel


class CheapEngine(FakeEngine):
    # Counts a token per 4 characters instead of running tiktoken over 60+ MB.
    def tokenize(self, text, *args, **kwargs):
        return [1] * (len(text) // 4 + 1)

    def count_tokens(self, text):
        return len(text) // 4 + 1

    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
        self.prompts.append(len(prompt_ids))
        if on_text:
            on_text("Alarms were logged.")
        return Completion("Alarms were logged.", [], GenerationStats(len(prompt_ids), len(prompt_ids), 4,
                                                                      finish="eos"))


engine = CheapEngine(n_ctx=1 << 20)
assistant.modelref.open_model = lambda *a, **k: LoadedModel("cheap", engine)
from assistant.cli import main

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    main(["summarize", "-"], standalone_mode=False)
finally:
    sys.stderr.write(json.dumps({"calls": len(engine.prompts), "rss_growth_kb":
                                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}) + "\n")
"""


def _feed(proc: subprocess.Popen, size: int) -> None:
    """Write `size` bytes of log lines to the child's stdin, 1 MB at a time (never held whole)."""
    line = b"2026-11-23T10:00:00Z worker-3 handled request in 12 ms; the queue held 4 jobs.\n"
    block = line * ((1 << 20) // len(line))
    sent = 0
    try:
        while sent < size:
            piece = block[: size - sent]
            proc.stdin.write(piece)
            sent += len(piece)
    finally:
        proc.stdin.close()


@pytest.mark.parametrize("megabytes", [60, 150])
def test_stdin_over_the_limit_streams_like_a_file(tmp_path, megabytes):
    import json
    import threading

    env = dict(os.environ, XGEN_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", STDIN_SUMMARY], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                stdout=out_file, stderr=err_file)
    size = megabytes << 20
    feeder = threading.Thread(target=_feed, args=(proc, size), daemon=True)
    feeder.start()
    try:
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    feeder.join(10)
    stdout = out_path.read_text()
    err = err_path.read_text(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(err.strip().splitlines()[-1])
    assert stdout.strip() == "Alarms were logged."
    # Every byte was summarized (~4 characters a token here), in parts of about a window.
    stats = re.search(r"\((\d+) document tokens, (\d+) parts, (\d+) model calls", err)
    assert stats, err[-2000:]
    assert int(stats[1]) >= size // 4 and int(stats[2]) >= megabytes // 4
    assert report["calls"] == int(stats[3])
    assert "too large" not in err and "Traceback" not in err
    # Progress in MiB read, its total unknown until the end, then the full size.
    assert "read 4.0 MiB" in err.replace("\r", "\n") or "read 3.9 MiB" in err.replace("\r", "\n"), err[-2000:]
    assert f"read {megabytes:.1f} of {megabytes:.1f} MiB (100%)" in err
    # Memory: the 50 MB the loader holds before it can tell, a few windows and the imports
    # of the command (~116 MB measured for 60 MB and for 150 MB alike), whatever the input
    # size; holding 150 MB of input as bytes and text would take twice that.
    assert report["rss_growth_kb"] < 135 << 10, report


def test_small_stdin_is_still_one_document(tmp_path):
    import io

    from assistant.documents import Document, LargeTextFile, open_stdin_for_summary

    doc = open_stdin_for_summary(io.BytesIO(b"The boiler was reset.\n"))
    assert isinstance(doc, Document) and doc.text == "The boiler was reset.\n" and doc.source == "<stdin>"
    big = open_stdin_for_summary(io.BytesIO(b"line of text\n" * 1000), max_bytes=5000, window_bytes=4096)
    assert isinstance(big, LargeTextFile) and big.size is None
    windows = list(big.windows())
    assert "".join(t for t, _ in windows) == "line of text\n" * 1000
    assert big.size == 13000 and windows[-1][1] == 13000
    with pytest.raises(XGenError, match=r"^standard input is too large: more than 4\.9 KB"):
        open_stdin_for_summary(io.BytesIO(b"%PDF-1.4\n" + b"x" * 9000), max_bytes=5000)
