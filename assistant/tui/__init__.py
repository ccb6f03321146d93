"""The terminal app (Textual): `xgen` or `xgen chat FILE...`."""

from __future__ import annotations

__all__ = ["XGenApp", "create_app"]


def __getattr__(name: str):
    # Textual is imported only when the app is wanted, not by every `xgen` command.
    if name in __all__:
        from assistant.tui import app

        return getattr(app, name)
    raise AttributeError(name)
