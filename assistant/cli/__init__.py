"""The `xgen` command line: a thin face over the core (assistant/session.py, summarize.py,
modelref.py, store). Each command's docstring is its help; the group and the model-file
commands live in main.py, the others are added here."""

from assistant.cli.app import chat
from assistant.cli.assist import ask, models, pull, summarize
from assistant.cli.library import index, library, search
from assistant.cli.main import main, run
from assistant.cli.sessions import cache, sessions

for _command in (models, pull, summarize, ask, sessions, cache, chat, index, search, library):
    main.add_command(_command)

__all__ = ["main", "run"]
