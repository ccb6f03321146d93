"""What the app runs on: the engine factory it is given, the models its picker lists, and
telling a missing model apart.

The app never opens a model itself: it calls an engine factory in a worker thread
(`factory(model_ref)`, where None means the default model). The command line passes a
`ModelLoader`; tests pass their own function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant.modelref import LoadedModel, NoModel, local_gguf_files, open_model
from assistant.prompt import CHAT
from models.errors import XGenError

if TYPE_CHECKING:
    from assistant.engines.base import Engine

__all__ = ["EngineFactory", "LoadedModel", "ModelLoader", "as_loaded", "is_no_model", "local_models"]

EngineFactory = Callable[[str | None], "Engine | LoadedModel"]


class ModelLoader:
    """An engine factory for the app: `engine_kind`, `n_ctx`, `threads` and `kv_cache` apply
    to the model first asked for (or the default one); a model picked later gets its own
    default engine."""

    def __init__(self, model: str | None = None, engine_kind: str | None = None, n_ctx: int | None = None,
                 threads: int | None = None, kv_cache: str | None = None):
        self.model = model
        self.engine_kind = engine_kind
        self.n_ctx = n_ctx
        self.threads = threads
        self.kv_cache = kv_cache
        self._first = True

    def __call__(self, ref: str | None) -> LoadedModel:
        # The first load may be a reopened session's model rather than `model`. The app
        # itself names the demo on every load of it (implicit=False: no note for it here).
        first, self._first = self._first, False
        same = ref == self.model or first
        return open_model(ref, self.engine_kind if same else None, self.n_ctx, self.threads, self.kv_cache,
                          implicit=False)


def as_loaded(result: "Engine | LoadedModel", ref: str | None) -> LoadedModel:
    """A factory may return a bare Engine (tests do); name it after its model."""
    if isinstance(result, LoadedModel):
        if result.ref is None:
            result.ref = ref
        return result
    return LoadedModel(result.model_name or result.name, result, CHAT, ref, ref or "")


def local_models() -> list[tuple[str, str]]:
    """(ref, label) of the models on this machine, for the model picker."""
    found = []
    for path in local_gguf_files():
        size = path.stat().st_size / 2**30
        found.append((str(path), f"{path.name}  ({size:.2f} GiB)" if size >= 0.1 else
                      f"{path.name}  ({size * 1024:.0f} MiB)"))
    return found


def is_no_model(exc: XGenError) -> bool:
    return isinstance(exc, NoModel)
