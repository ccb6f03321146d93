"""The `xgen` command line: a thin face over the core (assistant/session.py, summarize.py,
modelref.py, store). Each command's docstring is its help."""

from assistant.cli.main import main, run

__all__ = ["main", "run"]
