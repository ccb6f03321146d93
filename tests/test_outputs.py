"""Writing outputs safely (`sessions export`, standard output, atomic_output): a read-only
or full file system is one line and leaves nothing; `--force` writes through links and never
replaces a device, FIFO or socket."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from assistant.store import Store
from models.errors import XGenError
from tests.cli_helpers import assert_one_line_failure, cli, one_error_line, xgen
from tests.read_only_mount import needs_ro_mount, read_only

@pytest.fixture
def session_id(home) -> str:
    with Store() as store:
        session = store.create_session(title="Q3 report")
        store.add_message(session.id, "user", "What changed in Q3?")
        store.add_message(session.id, "assistant", "Revenue rose 12%.")
    return session.id


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



# -- the standard output before a command runs, or closed ------------------------------------

@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_on_dev_full(home, option):
    """Click writes these while it parses the options, before any command's own handling."""
    with open("/dev/full", "w") as full:
        out = xgen(option, env={"XGEN_HOME": str(home)}, stdout=full)
    assert out.returncode == 1
    assert one_error_line(out.stderr) == "error: cannot write to the standard output: No space left on device"


def test_a_closed_standard_output_is_one_line(home):
    """`xgen sessions list >&-`: Python starts with sys.stdout None."""
    out = xgen("sessions", "list", env={"XGEN_HOME": str(home)}, prefix=("sh", "-c", 'exec "$0" "$@" >&-'))
    assert out.returncode == 1
    assert one_error_line(out.stderr) == "error: the standard output is closed; nothing could be shown"


@pytest.mark.parametrize("url", ["http://[::1", "http://localhost:port"])
def test_a_malformed_server_address_is_one_line(home, url, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("The pump was serviced.\n")
    out = xgen("--model", url, "ask", str(notes), "-q", "When?", env={"XGEN_HOME": str(home)})
    assert out.returncode == 1
    assert one_error_line(out.stderr) == f"error: {url!r} is not a server address; expected e.g. http://127.0.0.1:8000"


def test_a_huge_session_count_is_refused_by_the_option(home):
    out = xgen("sessions", "list", "-n", "99999999999999999999", env={"XGEN_HOME": str(home)})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "is not in the range 1<=x<=1000000" in out.stderr


def test_exports_are_private_and_force_keeps_a_files_permissions(session_id, tmp_path):
    """`--force` once left a 0600 file at 0644 and a 0640 file without its group."""
    old_umask = os.umask(0o022)
    try:
        new = tmp_path / "new.md"
        assert cli("sessions", "export", session_id[:8], "-o", str(new)).exit_code == 0
        assert stat.S_IMODE(new.stat().st_mode) == 0o600  # a conversation is private, whatever the umask
        for mode in (0o600, 0o640, 0o664):
            kept = tmp_path / f"kept-{mode:o}.md"
            kept.write_text("old")
            kept.chmod(mode)
            if os.geteuid() == 0:  # root may give it a group of its own: check it is kept
                os.chown(kept, -1, 4321 + mode)
            group = kept.stat().st_gid
            assert cli("sessions", "export", session_id[:8], "-o", str(kept), "--force").exit_code == 0
            assert kept.read_text().startswith("# Q3 report")
            assert (stat.S_IMODE(kept.stat().st_mode), kept.stat().st_gid) == (mode, group)
    finally:
        os.umask(old_umask)


def test_a_new_data_folder_is_private(tmp_path, monkeypatch):
    home = tmp_path / "nested" / "xgen-home"
    monkeypatch.setenv("XGEN_HOME", str(home))
    old_umask = os.umask(0o022)
    try:
        assert cli("sessions", "list").exit_code == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.parent.stat().st_mode) == 0o755  # folders above it follow the umask


@pytest.mark.parametrize("args", [(), ("chat",)], ids=["xgen", "xgen chat"])
def test_the_app_without_a_terminal_is_refused(home, args):
    """`xgen < /dev/null > log` ran on silently until killed (then a RuntimeError traceback)."""
    result = xgen(*args, env={"XGEN_HOME": str(home)}, timeout=30)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "the app needs a terminal" in line and "xgen ask" in line and "xgen summarize" in line
