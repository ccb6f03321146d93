"""Where xgen-local keeps its files: one local data directory, nothing elsewhere.

`XGEN_HOME` overrides the platform's user data directory (tests set it). A data
directory that cannot be a folder (a file is in the way) or cannot be created (a
read-only mount, no permission) is a one-line error, not a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from models.errors import XGenError


def _make_folder(path: Path, what: str, mode: int = 0o777) -> Path:
    hint = " (set by XGEN_HOME)" if what == "data folder" and os.environ.get("XGEN_HOME") else ""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except FileExistsError:
        raise XGenError(f"{path}: the {what}{hint} is a file, not a folder; move it aside or "
                        "point XGEN_HOME at a folder") from None
    except OSError as exc:
        raise XGenError(f"cannot create the {what} {path}{hint}: {exc.strerror or exc}") from None
    if not path.is_dir():  # mkdir(exist_ok=True) accepts nothing else, but a race could
        raise XGenError(f"{path}: the {what}{hint} is not a folder")
    return path


def data_dir() -> Path:
    home = os.environ.get("XGEN_HOME")
    path = Path(home).expanduser() if home else Path(platformdirs.user_data_dir("xgen-local", appauthor=False))
    # Private when new (0700): sessions, documents' text and the library index are in it.
    # An existing folder keeps the permissions its owner gave it.
    return _make_folder(path, "data folder", 0o700)


def models_dir() -> Path:
    return _make_folder(data_dir() / "models", "models folder")


def leaves_folder(name: str) -> bool:
    """Whether a file name that a listing or an index gives (a Hub repository's, a
    checkpoint's index.json) would land outside the folder it is read into: absolute, or
    with a `..` part (backslashes read as separators too). Judged by the name alone: a
    Hugging Face cache snapshot's files are links out of it, and are fine."""
    return not name or name.startswith("/") or ".." in name.replace("\\", "/").split("/")
