"""What the chat screen and its parts need from the app, as a typed protocol, so that
screens and widgets never import the app module (no import cycle) and say what they use."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from assistant.modelref import LoadedModel
    from assistant.session import Conversation
    from assistant.store import Store


@dataclass(frozen=True)
class ModelState:
    """The model as the status bar shows it (a reactive of the app)."""

    label: str = "no model"
    engine: str = ""
    n_ctx: int = 0
    loading: bool = False


class Host(Protocol):
    """The app, as the chat screen sees it (XGenApp implements it)."""

    store: "Store"
    conversation: "Conversation"
    engine_lock: threading.Lock  # one generation at a time; held while an engine closes
    loaded: "LoadedModel | None"  # None while loading, after a failure, or with no model
    model_loading: bool
    model_state: ModelState  # a reactive: watch it to follow loads and failures
