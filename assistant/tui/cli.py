"""`xgen chat [FILE...]` (and `xgen` alone): the terminal app."""

from __future__ import annotations

import click

from assistant.cli_assist import ctx_option, engine_option, kv_cache_option, model_option, threads_option


@click.command()
@click.argument("files", nargs=-1)
@click.option("-s", "--session", "session_id", help="Open this saved session (default: the most recent one).")
@model_option
@engine_option
@ctx_option
@threads_option
@kv_cache_option
def chat(files, session_id, model_ref, engine_kind, n_ctx, threads, kv_cache) -> None:
    """Open the terminal app, with FILES attached to a new session.

    Without FILES it reopens the most recent session. Enter sends, Ctrl+J starts a
    new line, Esc stops a reply, Ctrl+P lists every command. Everything stays on this
    machine; conversations are saved as they are written.
    """
    from assistant.store import Store
    from assistant.tui.app import create_app

    with Store() as store:
        app = create_app(store=store, files=files, model=model_ref, engine_kind=engine_kind, n_ctx=n_ctx,
                         threads=threads, kv_cache=kv_cache, session_id=session_id)
        try:
            app.run()
        finally:
            app.close_model()
