"""Write files under a temporary name and rename only when complete.

An interrupted or failed write (Ctrl+C, a full disk, a bad shard) never leaves a
half-written file under the name the user asked for.

Only regular files are written: an output name that is a symbolic link is written
through (the link stays, the file it points to gets the new content); a device, a FIFO
or a socket is refused, never replaced. An output folder that cannot be written (a
read-only file system, no permission) is a one-line error before anything starts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models import filelock
from models.errors import XGenError


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextmanager
def writer_lock(target: Path) -> Iterator[None]:
    """Be the only xgen writing `target` while the block runs, or raise XGenError at once.

    Two conversions or pulls into one file used to write one .partial together: the first
    said "wrote" and the file held the second's bytes. The lock (models/filelock.py) is
    `.NAME.lock` beside the target, holding the writer's pid for the refusal to name.
    """
    if not filelock.AVAILABLE:  # Windows: no flock (the project runs on Linux and macOS)
        yield
        return
    lock = lock_path(target)
    try:
        fd = filelock.try_hold(lock, f"{os.getpid()}\n")
    except OSError as exc:
        raise XGenError(f"cannot write {target}: {exc.strerror or exc}") from None
    if fd is None:
        raise XGenError(f"another xgen is writing {target} (pid {filelock.note_of(lock) or '?'}); "
                        "wait for it to finish, or stop it")
    try:
        yield
    finally:
        filelock.let_go(lock, fd)


_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def output_target(path: str | Path, *, force: bool = False) -> Path:
    """The regular file that writing `path` would replace: `path` itself, or the file a
    symbolic link at `path` points to (it may not exist yet). Raises XGenError for a
    folder, a device, a FIFO or a socket, and for an existing file without `force`."""
    path = Path(path)
    target = path
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if target.is_symlink():  # a loop of links: realpath gives up on it
            raise XGenError(f"{path} is a symbolic link that leads nowhere (a loop); give a file name")
    try:
        st = target.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise XGenError(f"cannot write {path}: {exc.strerror or exc}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise XGenError(f"{path} is a folder; give a file name")
        for test, what in _KINDS:
            if test(st.st_mode):
                raise XGenError(f"{path} is {what}, not a regular file; it is left as it is "
                                "(write to a file, or to the standard output)")
        if not force:
            raise XGenError(f"{path} already exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise XGenError(f"{target.parent}: no such folder for the output")
    return target


@contextmanager
def atomic_output(path: str | Path, *, force: bool = False, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` (or beside the file a link at `path` points
    to); rename it onto that file if the block succeeds.

    A replaced file keeps its permissions (and its group, where the user may set it): a
    private file stays private after --force. A new file follows the umask, or is 0600
    if `private` (exports of conversations)."""
    target = output_target(path, force=force)
    with writer_lock(target):
        yield from _write_through_partial(path, target, 0o600 if private else 0o666)


def _write_through_partial(path: str | Path, target: Path, mode: int) -> Iterator[Path]:
    tmp = partial_path(target)
    try:
        # A run killed with SIGKILL leaves its .partial behind: remove it (never write
        # through it), then make sure the folder takes a new file before any work starts.
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
    except OSError as exc:
        raise XGenError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _keep_permissions(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        # BaseException: Ctrl+C and SystemExit must clean up too; the error propagates.
        # The clean-up itself must not replace that error (a read-only or vanished folder).
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _keep_permissions(old: Path, new: Path) -> None:
    """Give `new` the mode and group of `old`, if `old` exists."""
    try:
        st = old.stat()
    except FileNotFoundError:
        return
    try:
        os.chown(new, -1, st.st_gid)  # before chmod: chown may clear set-id bits
    except OSError:
        pass  # not a member of that group: the mode is kept all the same
    os.chmod(new, stat.S_IMODE(st.st_mode))


def write_text(path: str | Path, text: str, *, force: bool = False, private: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` by the rules above (`xgen sessions export -o` and the
    app's export): returns the file written. Raises XGenError, with nothing written, for
    what output_target refuses and for a write that fails (a full disk, a read-only folder)."""
    target = output_target(path, force=force)
    try:
        with atomic_output(path, force=force, private=private) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:  # the partial file is gone
        raise XGenError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
    return target
