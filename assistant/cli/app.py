"""`xgen chat [FILE...]` (and `xgen` alone): the terminal app."""

from __future__ import annotations

import click

from assistant.cli.options import model_options, session_option
from models.errors import XGenError


@click.command()
@click.argument("files", nargs=-1)
@session_option
@model_options
def chat(files, session_id, model_ref, engine_kind, n_ctx, threads, kv_cache) -> None:
    """Open the terminal app, with FILES attached to a new session.

    Without FILES it reopens the most recent session (with the model it used, unless
    --model says otherwise). Enter sends, Ctrl+J starts a
    new line, Esc stops a reply, Ctrl+P lists every command. Everything stays on this
    machine; conversations are saved as they are written.
    """
    from assistant.store import Store
    from assistant.tui.app import create_app

    with Store() as store:
        if session_id:  # refused here, in one line, as `xgen ask -s` refuses it (the store's lookup)
            session_id = store.get_session(session_id).id
        _need_a_terminal()
        app = create_app(store=store, files=files, model=model_ref, engine_kind=engine_kind, n_ctx=n_ctx,
                         threads=threads, kv_cache=kv_cache, session_id=session_id)
        try:
            app.run()
        finally:
            app.close_model()


def _need_a_terminal() -> None:
    """Without a terminal (`xgen < /dev/null > log`, cron, a pipe) the app ran on, unseen,
    until killed; say so and point to the commands that work without one."""
    import sys

    if not (sys.stdin is not None and sys.stdin.isatty() and sys.stdout is not None and sys.stdout.isatty()):
        raise XGenError("the app needs a terminal (standard input and output are not one); "
                        "without one, use `xgen ask FILE -q QUESTION` or `xgen summarize FILE`")
