"""The terminal app (Textual): `xgen` or `xgen chat FILE...`; `assistant.tui.app.create_app` builds it.

Textual is imported only when the app is wanted, by importing `assistant.tui.app`, not by
every `xgen` command."""
