"""Write files under a temporary name and rename only when complete.

An interrupted or failed write (Ctrl+C, a full disk, a bad shard) never leaves a
half-written file under the name the user asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.errors import XGenError


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


@contextmanager
def atomic_output(path: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    if path.exists() and not force:
        raise XGenError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        raise XGenError(f"{path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise XGenError(f"{path.parent}: no such folder for the output")
    tmp = partial_path(path)
    # A run killed with SIGKILL leaves its .partial behind: remove it (never write through it).
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException: Ctrl+C and SystemExit must clean up too; the error propagates.
        tmp.unlink(missing_ok=True)
        raise
