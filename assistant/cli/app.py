"""`xgen chat [FILE...]` (and `xgen` alone): the terminal app."""

from __future__ import annotations

import click

from assistant.cli.options import model_options, session_option


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
        app = create_app(store=store, files=files, model=model_ref, engine_kind=engine_kind, n_ctx=n_ctx,
                         threads=threads, kv_cache=kv_cache, session_id=session_id)
        try:
            app.run()
        finally:
            app.close_model()

