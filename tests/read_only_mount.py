"""A real read-only mount for tests: a bind mount in a private mount namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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



def full_disk(folder: Path, contents: Path) -> tuple[str, ...]:
    """A command prefix that runs the command with `folder` on a small file system holding a
    copy of `contents`, filled to its last byte (for it alone, as with read_only)."""
    script = ('mount -t tmpfs -o size=1m tmpfs "$1" && cp -a "$2"/. "$1"/ && '
              '{ dd if=/dev/zero of="$1/.fill" bs=4k 2>/dev/null; true; } && shift 2 && exec "$@"')
    return ("unshare", "-m", "sh", "-c", script, "sh", str(folder), str(contents))
