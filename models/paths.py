"""Where xgen-local keeps its files: one local data directory, nothing elsewhere.

`XGEN_HOME` overrides the platform's user data directory (tests set it).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    home = os.environ.get("XGEN_HOME")
    path = Path(home).expanduser() if home else Path(platformdirs.user_data_dir("xgen-local", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
